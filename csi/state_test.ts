import assert from "node:assert/strict";
import { join } from "node:path";
import { StateStore, type VolumeRecord } from "./state.ts";

const record = (id: string): VolumeRecord => ({
  version: 1,
  volumeId: id,
  targetPath: `/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/${id}/mount`,
  pod: { namespace: "shop", name: "web-1", uid: "u" },
  os: "debian",
  classes: [{ namespace: "shop", name: "spire-ca" }],
  mounted: true,
});

Deno.test("volume records round-trip, one file each, and removal is idempotent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new StateStore(dir);
    await store.save(record("a"));
    await store.save(record("b"));
    await store.save({ ...record("b"), os: "alpine" });
    const files = await Array.fromAsync(Deno.readDir(join(dir, "volumes")));
    assert.equal(files.length, 2);
    const { records, errors } = await store.loadAll();
    assert.deepEqual(errors, []);
    assert.deepEqual(
      records.map((r) => [r.volumeId, r.os]).sort(),
      [["a", "debian"], ["b", "alpine"]],
    );
    await store.remove("a");
    await store.remove("a");
    assert.deepEqual((await store.loadAll()).records.map((r) => r.volumeId), ["b"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unreadable records are reported by path; leftover temporary files are removed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new StateStore(dir);
    await store.save(record("good"));
    await Deno.writeTextFile(join(dir, "volumes", "broken.json"), "{not json");
    await Deno.writeTextFile(join(dir, "volumes", "x.json.123.tmp"), "partial");
    const { records, errors } = await store.loadAll();
    assert.deepEqual(records.map((r) => r.volumeId), ["good"]);
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /broken\.json is unreadable/);
    const names = (await Array.fromAsync(Deno.readDir(join(dir, "volumes")))).map((e) => e.name);
    assert.ok(!names.some((n) => n.endsWith(".tmp")));
    assert.deepEqual((await new StateStore(join(dir, "none")).loadAll()).records, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
