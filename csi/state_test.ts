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

Deno.test("the tmpfs's mount options round-trip; a record written before them reads as none", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new StateStore(dir);
    const context = 'context="system_u:object_r:container_file_t:s0:c1,c2"';
    await store.save({ ...record("new"), mountOptions: [context] });
    // A file as the driver wrote it before mountOptions existed.
    const old = record("old");
    assert.ok(!("mountOptions" in old));
    await Deno.writeTextFile(join(dir, "volumes", "old.json"), JSON.stringify(old, null, 2) + "\n");
    const { records, errors } = await store.loadAll();
    assert.deepEqual(errors, []);
    const byId = new Map(records.map((r) => [r.volumeId, r]));
    assert.deepEqual(byId.get("new")?.mountOptions, [context]);
    assert.equal(byId.get("old")?.mountOptions, undefined);
    assert.deepEqual(byId.get("old"), old);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a record whose mountOptions is not a list of strings is unreadable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new StateStore(dir);
    await store.save(record("good"));
    await Deno.mkdir(join(dir, "volumes"), { recursive: true });
    for (const [name, options] of [["a", "context=x"], ["b", [1]], ["c", null]] as const) {
      await Deno.writeTextFile(
        join(dir, "volumes", `${name}.json`),
        JSON.stringify({ ...record(name), mountOptions: options }),
      );
    }
    const { records, errors } = await store.loadAll();
    assert.deepEqual(records.map((r) => r.volumeId), ["good"]);
    assert.equal(errors.length, 3);
    for (const e of errors) assert.match(e.message, /mountOptions is not a list of strings/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
