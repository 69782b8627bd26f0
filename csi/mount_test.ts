import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { StoreTooLargeError, toCsiError } from "./errors.ts";
import {
  isMountPoint,
  mountTmpfs,
  parseSize,
  resizeTmpfs,
  SizeSyntaxError,
  unmount,
} from "./mount.ts";

Deno.test("parseSize reads --tmpfs-size values in binary units, as tmpfs's size= does", () => {
  assert.equal(parseSize("8Mi"), 8 * 1024 * 1024);
  assert.equal(parseSize("8m"), 8 * 1024 * 1024);
  assert.equal(parseSize("512Ki"), 512 * 1024);
  assert.equal(parseSize("1Gi"), 1024 ** 3);
  assert.equal(parseSize("1048576"), 1048576);
  for (const bad of ["0", "8Ti", "8 Mi", "-1", "i", "8i", ""]) {
    assert.throws(() => parseSize(bad), SizeSyntaxError, bad);
  }
});

Deno.test("a StoreTooLargeError is RESOURCE_EXHAUSTED and names the size, the limit and the flag", () => {
  const e = toCsiError(
    new StoreTooLargeError(5_000_000, 10_065_920, 8_388_608, "8Mi"),
    " (pod a/b)",
  );
  assert.equal(e.code, status.RESOURCE_EXHAUSTED);
  assert.ok(e.cause instanceof StoreTooLargeError);
  assert.match(
    e.message,
    /^trust store of 5000000 bytes needs 10065920 bytes of tmpfs to be swapped in/,
  );
  assert.match(e.message, /limit of 8388608 bytes set by --tmpfs-size=8Mi.* \(pod a\/b\)$/);
});

Deno.test({
  name: "resizeTmpfs grows a tmpfs in place, keeping its files; shrinking below use fails",
  ignore: Deno.uid() !== 0 && Deno.env.get("CI") !== "true",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "mount_test_" });
    try {
      await mountTmpfs(dir, "64Ki");
      assert.ok(await isMountPoint(dir));
      const data = new Uint8Array(48 * 1024).fill(7);
      await Deno.writeFile(join(dir, "a"), data);
      await resizeTmpfs(dir, 256 * 1024);
      const fs = statfsSync(dir);
      assert.equal(fs.blocks * fs.bsize, 256 * 1024);
      assert.deepEqual(await Deno.readFile(join(dir, "a")), data);
      await Deno.writeFile(join(dir, "b"), new Uint8Array(128 * 1024));
      await assert.rejects(resizeTmpfs(dir, 64 * 1024), /remount,size=65536/);
      assert.equal(statfsSync(dir).blocks * statfsSync(dir).bsize, 256 * 1024);
    } finally {
      await unmount(dir);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
