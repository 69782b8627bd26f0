/**
 * The node server on real tmpfs mounts (root only; in CI a missing mount fails): a first publish
 * mounts a tmpfs sized from its store with room for a rotation, a larger store grows it in place
 * up to `--tmpfs-size`, and a store that cannot swap within the cap is refused before anything is
 * written: RESOURCE_EXHAUSTED naming the size, the limit and the flag on a first publish (nothing
 * mounted), the last good store kept on an update. On a host without SELinux (the real probe) a
 * tmpfs is mounted without a context, and a resize keeps its options.
 */
import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { tmpfsSizeFor } from "../trust_store/mod.ts";
import { makeCert } from "../trust_store/testdata/pki.ts";
import { CsiError } from "./errors.ts";
import { UPDATE_FAILURES } from "./metrics.ts";
import { hostMounter, isMountPoint } from "./mount.ts";
import { selinuxfsMounted } from "./selinux.ts";
import { caSecret, harness, readStore, secretClass } from "./_test_utils.ts";

const ignore = Deno.uid() !== 0 && Deno.env.get("CI") !== "true";
const BUNDLE = "ca-certificates.crt";

const pems: string[] = [];
for (let i = 0; i < 321; i++) pems.push((await makeCert({ subject: `CN=Bulk CA ${i}, O=t` })).pem);
const few = pems.slice(0, 2).join("");
const many = pems.slice(0, 160).join("");
/** The same 160 CAs plus one: only the bundle files and the new CA's files change. */
const manyPlusOne = pems.slice(0, 161).join("");
/** 160 other CAs: every file changes. */
const others = pems.slice(161).join("");

/** The mount options and super options of the mount at `dir`, from `/proc/self/mountinfo`. */
async function mountinfo(dir: string): Promise<{ options: string[]; superOptions: string[] }> {
  for (const line of (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")) {
    const fields = line.split(" ");
    if (fields[4] !== dir) continue;
    const sep = fields.indexOf("-");
    return { options: fields[5].split(","), superOptions: fields[sep + 3].split(",") };
  }
  throw new Error(`${dir} is not in /proc/self/mountinfo`);
}

function tmpfs(dir: string): { size: number; used: number } {
  const fs = statfsSync(dir);
  return { size: fs.blocks * fs.bsize, used: (fs.blocks - fs.bfree) * fs.bsize };
}

/** Pages of the live generation's files, each inode once (equal files are hard links). */
function storeBytes(dir: string): number {
  let total = 0;
  const inodes = new Set<number>();
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) walk(p);
      else if (e.isFile) {
        const st = Deno.statSync(p);
        if (st.ino === null || inodes.has(st.ino)) continue;
        inodes.add(st.ino);
        total += Math.ceil(st.size / 4096) * 4096;
      }
    }
  };
  walk(join(dir, "..data/"));
  return total;
}

Deno.test({
  name:
    "a first publish sizes the tmpfs for its store and a rotation; a larger store grows it in place",
  ignore,
  async fn() {
    const h = await harness({ mounter: hostMounter, tmpfsSize: "8Mi" });
    try {
      h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
      h.objects.put("Secret", "shop", "ca", caSecret(few));
      await h.server.publish(h.publishRequest("v1"));
      const target = h.target("v1");
      assert.ok(await isMountPoint(target));
      const small = tmpfs(target);
      assert.equal(small.used, storeBytes(target));
      assert.equal(small.size, tmpfsSizeFor(small.used));
      assert.ok(small.size < 1024 * 1024, `${small.size}`);

      h.objects.put("Secret", "shop", "ca", caSecret(many));
      await h.server.idle();
      assert.ok((await readStore(target, BUNDLE)).includes(pems[159].split("\n")[1]));
      const grown = tmpfs(target);
      assert.equal(grown.used, storeBytes(target));
      assert.ok(grown.size >= 2 * grown.used && grown.size <= 8 * 1024 * 1024, `${grown.size}`);
      assert.equal(h.server.metrics.value(UPDATE_FAILURES, { reason: "render" }) ?? 0, 0);
      await h.server.unpublish(h.unpublishRequest("v1"));
      assert.ok(!(await isMountPoint(target)));
    } finally {
      await h.close();
    }
  },
});

Deno.test({
  name:
    "a store too large for --tmpfs-size fails a first publish RESOURCE_EXHAUSTED with nothing mounted",
  ignore,
  async fn() {
    const h = await harness({ mounter: hostMounter, tmpfsSize: "512Ki" });
    try {
      h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
      h.objects.put("Secret", "shop", "ca", caSecret(many));
      await assert.rejects(h.server.publish(h.publishRequest("v1")), (e: unknown) => {
        assert.ok(e instanceof CsiError);
        assert.equal(e.code, status.RESOURCE_EXHAUSTED);
        assert.match(
          e.message,
          /^trust store of \d+ bytes needs \d+ bytes of tmpfs to be swapped in .* over the limit of 524288 bytes set by --tmpfs-size=512Ki; raise --tmpfs-size .*\(pod shop\/web\)$/,
        );
        return true;
      });
      assert.ok(!(await isMountPoint(h.target("v1"))));
      assert.deepEqual([...Deno.readDirSync(h.target("v1"))], []);
      assert.equal(h.state.records.size, 0);
    } finally {
      await h.close();
    }
  },
});

Deno.test({
  name: "an update too large for --tmpfs-size keeps the last good store and reports the sizes",
  ignore,
  async fn() {
    const h = await harness({ mounter: hostMounter, tmpfsSize: "512Ki" });
    try {
      h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
      h.objects.put("Secret", "shop", "ca", caSecret(few));
      await h.server.publish(h.publishRequest("v1"));
      const target = h.target("v1");
      const before = await readStore(target, BUNDLE);
      h.objects.put("Secret", "shop", "ca", caSecret(many));
      await h.server.idle();
      assert.equal(await readStore(target, BUNDLE), before);
      assert.equal(h.server.metrics.value(UPDATE_FAILURES, { reason: "render" }), 1);
      const stats = await h.server.stats({
        volumeId: "v1",
        volumePath: target,
        stagingTargetPath: "",
      });
      assert.equal(stats.volumeCondition.abnormal, true);
      assert.match(
        stats.volumeCondition.message,
        /over the limit of 524288 bytes set by --tmpfs-size=512Ki/,
      );
      // A republish (kubelet's periodic one) succeeds and keeps the store.
      await h.server.publish(h.publishRequest("v1"));
      assert.equal(await readStore(target, BUNDLE), before);
      assert.ok(tmpfs(target).size <= 512 * 1024);
      await h.server.unpublish(h.unpublishRequest("v1"));
    } finally {
      await h.close();
    }
  },
});

Deno.test({
  name:
    "a swap needs only the changed files beside the old store: adding a CA fits where replacing every CA does not",
  ignore,
  async fn() {
    // 160 CAs are ~0.9 MiB on a tmpfs (each CA file and its hash-named copy share an inode).
    const h = await harness({ mounter: hostMounter, tmpfsSize: "1536Ki" });
    try {
      h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
      h.objects.put("Secret", "shop", "ca", caSecret(many));
      await h.server.publish(h.publishRequest("v1"));
      const target = h.target("v1");
      const first = tmpfs(target);
      // Twice the store would exceed the cap: the tmpfs is mounted at the cap.
      assert.ok(tmpfsSizeFor(first.used) > 1536 * 1024, `${first.used}`);
      assert.equal(first.size, 1536 * 1024);

      h.objects.put("Secret", "shop", "ca", caSecret(manyPlusOne));
      await h.server.idle();
      assert.ok((await readStore(target, BUNDLE)).includes(pems[160].split("\n")[1]));
      assert.equal(h.server.metrics.value(UPDATE_FAILURES, { reason: "render" }) ?? 0, 0);
      const plusOne = await readStore(target, BUNDLE);

      h.objects.put("Secret", "shop", "ca", caSecret(others));
      await h.server.idle();
      assert.equal(await readStore(target, BUNDLE), plusOne);
      assert.equal(h.server.metrics.value(UPDATE_FAILURES, { reason: "render" }), 1);
      const stats = await h.server.stats({
        volumeId: "v1",
        volumePath: target,
        stagingTargetPath: "",
      });
      assert.match(
        stats.volumeCondition.message,
        /over the limit of 1572864 bytes set by --tmpfs-size=1536Ki/,
      );
      await h.server.unpublish(h.unpublishRequest("v1"));
    } finally {
      await h.close();
    }
  },
});

Deno.test({
  name:
    "without SELinux a publish with no context flag mounts a real tmpfs with no context; a resize keeps its options",
  ignore: ignore || selinuxfsMounted(),
  async fn() {
    // The real probe, as the driver runs: this host has no SELinux (the test is skipped on one).
    const h = await harness({ mounter: hostMounter, tmpfsSize: "8Mi", selinuxEnabled: undefined });
    try {
      h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
      h.objects.put("Secret", "shop", "ca", caSecret(few));
      await h.server.publish(h.publishRequest("v1", undefined, undefined, ["ro"]));
      const target = h.target("v1");
      assert.ok(await isMountPoint(target));
      assert.deepEqual(h.state.records.get("v1")?.mountOptions, []);
      const first = await mountinfo(target);
      for (const o of ["nosuid", "nodev", "noexec"]) assert.ok(first.options.includes(o), o);
      assert.ok(first.options.includes("rw"), "the driver's tmpfs stays writable with ro");
      assert.ok(first.superOptions.includes("mode=755"), first.superOptions.join(","));
      const selinux = (o: string) => /context=|^seclabel$/.test(o);
      assert.deepEqual([...first.options, ...first.superOptions].filter(selinux), []);

      // Grown in place by mount -o remount,size=: same flags, still no context.
      const before = tmpfs(target).size;
      h.objects.put("Secret", "shop", "ca", caSecret(many));
      await h.server.idle();
      assert.ok(tmpfs(target).size > before);
      const grown = await mountinfo(target);
      assert.deepEqual(grown.options, first.options);
      assert.deepEqual(
        grown.superOptions.filter((o) => !o.startsWith("size=")),
        first.superOptions.filter((o) => !o.startsWith("size=")),
      );
      await h.server.unpublish(h.unpublishRequest("v1"));
      assert.ok(!(await isMountPoint(target)));
    } finally {
      await h.close();
    }
  },
});
