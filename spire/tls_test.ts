import assert from "node:assert/strict";
import { join } from "node:path";
import { DevCa } from "../x509/mod.ts";
import { TrustSource, TrustSourceError } from "./mod.ts";

Deno.test("TrustSource re-reads a changed file, follows a swapped symlink, keeps the last good on a torn read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "spire-trust-test-" });
  try {
    const [one, two] = [await DevCa.create(1), await DevCa.create(2)];
    const path = join(dir, "ca-certificates.crt");
    const trust = new TrustSource(path);
    await assert.rejects(trust.get(), TrustSourceError);

    await Deno.writeTextFile(path, one.certPem);
    assert.equal((await trust.get()).count, 1);
    await Deno.writeTextFile(path, one.certPem + two.certPem);
    assert.equal((await trust.get()).count, 2, "in-place rewrite is seen");

    await Deno.writeTextFile(path, "");
    assert.equal((await trust.get()).count, 2, "empty file: last good kept");
    assert.match(trust.lastError()?.message ?? "", /empty/);
    await Deno.writeTextFile(path, two.certPem.slice(0, 100));
    assert.equal((await trust.get()).count, 2, "half-written file: last good kept");

    // AtomicWriter-style: the file is a link through ..data, swapped by rename.
    await Deno.remove(path);
    await Deno.mkdir(join(dir, "v1"));
    await Deno.writeTextFile(join(dir, "v1", "ca-certificates.crt"), two.certPem);
    await Deno.symlink("v1", join(dir, "..data"));
    await Deno.symlink("..data/ca-certificates.crt", path);
    const anchors = await trust.get();
    assert.equal(anchors.count, 1);
    assert.equal(anchors.pem, two.certPem);
    assert.equal(trust.lastError(), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
