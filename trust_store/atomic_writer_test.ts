import assert from "node:assert/strict";
import { join } from "node:path";
import { AtomicWriter, PayloadPathError } from "./mod.ts";
import { scratchDir } from "./testdata/tmpfs.ts";

const enc = new TextEncoder();
const payload = (entries: Record<string, string>) =>
  new Map(Object.entries(entries).map(([k, v]) => [k, enc.encode(v)]));

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

async function withDir(fn: (dir: string) => Promise<void>) {
  const s = await scratchDir("atomic-writer-", "16m");
  try {
    await fn(s.dir);
  } finally {
    await s.cleanup();
  }
}

const TS_DIR = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\w+$/;

Deno.test("first write: timestamped dir, ..data link, top-level links through ..data", () =>
  withDir(async (dir) => {
    const w = new AtomicWriter(dir);
    const r = await w.write(
      payload({ "ca.crt": "one", "java/cacerts": "jks", "a/b/c.pem": "deep" }),
    );
    assert.deepEqual(r, { changed: true });
    const names = await listing(dir);
    const ts = names.filter((n) => TS_DIR.test(n));
    assert.equal(ts.length, 1, names.join(" "));
    assert.deepEqual(names, [ts[0], "..data", "a", "ca.crt", "java"].sort());
    assert.equal(await Deno.readLink(join(dir, "..data")), ts[0]);
    assert.equal(await Deno.readLink(join(dir, "ca.crt")), "..data/ca.crt");
    assert.equal(await Deno.readLink(join(dir, "java")), "..data/java");
    assert.equal(await Deno.readTextFile(join(dir, "java/cacerts")), "jks");
    assert.equal(await Deno.readTextFile(join(dir, "a/b/c.pem")), "deep");
    assert.equal((await Deno.stat(join(dir, "ca.crt"))).mode! & 0o777, 0o644);
    assert.equal((await Deno.stat(join(dir, ts[0]))).mode! & 0o777, 0o755);
  }));

Deno.test("unchanged content is a no-op; changes swap and remove the old dir and stale links", () =>
  withDir(async (dir) => {
    const w = new AtomicWriter(dir);
    await w.write(payload({ "ca.crt": "one", "old.pem": "x", "java/cacerts": "jks" }));
    const first = await Deno.readLink(join(dir, "..data"));
    assert.deepEqual(
      await w.write(payload({ "ca.crt": "one", "old.pem": "x", "java/cacerts": "jks" })),
      { changed: false },
    );
    assert.equal(await Deno.readLink(join(dir, "..data")), first);
    assert.deepEqual(
      await w.write(payload({ "ca.crt": "two", "new.pem": "y", "java/cacerts": "jks" })),
      { changed: true },
    );
    const second = await Deno.readLink(join(dir, "..data"));
    assert.notEqual(second, first);
    assert.deepEqual(await listing(dir), ["..data", second, "ca.crt", "java", "new.pem"].sort());
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "two");
    // A file removed inside a directory, or only a byte changed, is a change too.
    assert.equal((await w.write(payload({ "ca.crt": "two", "new.pem": "y" }))).changed, true);
    assert.equal((await w.write(payload({ "ca.crt": "twO", "new.pem": "y" }))).changed, true);
    assert.equal((await w.write(payload({ "ca.crt": "twO", "new.pem": "y" }))).changed, false);
  }));

Deno.test("crash leftovers are cleaned before the next write, even a no-op one", () =>
  withDir(async (dir) => {
    const w = new AtomicWriter(dir);
    const p = payload({ "ca.crt": "one", "java/cacerts": "jks" });
    await w.write(p);
    const live = await Deno.readLink(join(dir, "..data"));
    await Deno.mkdir(join(dir, "..2020_01_01_00_00_00.123456"));
    await Deno.writeTextFile(join(dir, "..2020_01_01_00_00_00.123456", "ca.crt"), "half");
    await Deno.symlink("..2020_01_01_00_00_00.123456", join(dir, "..data_tmp"));
    await Deno.symlink("..data/x", join(dir, "..link_tmp.x"));
    await Deno.remove(join(dir, "java")); // a lost top-level link
    await Deno.writeTextFile(join(dir, "stray.txt"), "not part of the payload");
    assert.deepEqual(await w.write(p), { changed: false });
    assert.deepEqual(await listing(dir), ["..data", live, "ca.crt", "java"].sort());
    assert.equal(await Deno.readTextFile(join(dir, "java/cacerts")), "jks");
  }));

Deno.test("a top-level directory or file in the way is replaced by the link", () =>
  withDir(async (dir) => {
    await Deno.mkdir(join(dir, "java"));
    await Deno.writeTextFile(join(dir, "java", "cacerts"), "stale");
    await Deno.writeTextFile(join(dir, "ca.crt"), "stale");
    await new AtomicWriter(dir).write(payload({ "ca.crt": "one", "java/cacerts": "jks" }));
    assert.equal(await Deno.readLink(join(dir, "java")), "..data/java");
    assert.equal(await Deno.readTextFile(join(dir, "java/cacerts")), "jks");
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "one");
  }));

Deno.test("invalid payload paths are refused before anything is touched", () =>
  withDir(async (dir) => {
    const w = new AtomicWriter(dir);
    await w.write(payload({ "ca.crt": "one" }));
    const before = await listing(dir);
    const bad: Record<string, string>[] = [
      { "": "x" },
      { "/etc/passwd": "x" },
      { "a/../../b": "x" },
      { "./a": "x" },
      { "a//b": "x" },
      { "..data/x": "x" },
      { "..hidden": "x" },
      { "a\\b": "x" },
      { "java": "x", "java/cacerts": "y" },
    ];
    for (const entries of bad) {
      await assert.rejects(w.write(payload(entries)), PayloadPathError, JSON.stringify(entries));
    }
    assert.deepEqual(await listing(dir), before);
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "one");
  }));

Deno.test("clear() leaves the directory empty and a later write works", () =>
  withDir(async (dir) => {
    const w = new AtomicWriter(dir);
    await w.write(payload({ "ca.crt": "one", "java/cacerts": "jks" }));
    await Deno.symlink("x", join(dir, "..data_tmp"));
    await w.clear();
    assert.deepEqual(await listing(dir), []);
    await w.clear();
    assert.deepEqual((await w.write(payload({ "ca.crt": "two" }))).changed, true);
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "two");
    await new AtomicWriter(join(dir, "missing")).clear();
  }));

Deno.test({
  name: "a full tmpfs fails the write cleanly and the old store stays",
  ignore: Deno.uid() !== 0, // mounting a small tmpfs needs root
  fn: async () => {
    const s = await scratchDir("atomic-full-", "256k");
    try {
      assert.ok(s.tmpfs);
      const w = new AtomicWriter(s.dir);
      await w.write(payload({ "ca.crt": "old", "java/cacerts": "jks" }));
      const live = await Deno.readLink(join(s.dir, "..data"));
      const huge = new Map([["ca.crt", new Uint8Array(512 * 1024).fill(65)]]);
      await assert.rejects(w.write(huge));
      assert.deepEqual(await listing(s.dir), ["..data", live, "ca.crt", "java"].sort());
      assert.equal(await Deno.readTextFile(join(s.dir, "ca.crt")), "old");
      assert.equal(await Deno.readTextFile(join(s.dir, "java/cacerts")), "jks");
      assert.equal((await w.write(payload({ "ca.crt": "new" }))).changed, true);
      assert.equal(await Deno.readTextFile(join(s.dir, "ca.crt")), "new");
    } finally {
      await s.cleanup();
    }
  },
});

Deno.test("a change hard-links unchanged files from the live generation and rewrites the rest", () =>
  withDir(async (dir) => {
    const w = new AtomicWriter(dir);
    await w.write(payload({ "ca.crt": "one", "java/cacerts": "jks", "a.pem": "a" }));
    const first = await Deno.readLink(join(dir, "..data"));
    const jksIno = (await Deno.stat(join(dir, first, "java/cacerts"))).ino;
    const caIno = (await Deno.stat(join(dir, first, "ca.crt"))).ino;
    await w.write(payload({ "ca.crt": "two", "java/cacerts": "jks", "b.pem": "b" }));
    const second = await Deno.readLink(join(dir, "..data"));
    assert.notEqual(second, first);
    const jks = await Deno.stat(join(dir, "java/cacerts"));
    assert.equal(jks.ino, jksIno, "unchanged file is the same inode");
    assert.equal(jks.nlink, 1, "the old generation's link is gone with its directory");
    assert.equal(jks.mode! & 0o777, 0o644);
    assert.notEqual((await Deno.stat(join(dir, "ca.crt"))).ino, caIno);
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "two");
    assert.deepEqual(await listing(dir), ["..data", second, "b.pem", "ca.crt", "java"].sort());
  }));

Deno.test("equal files are written once: every other path is a hard link, in this generation and from the live one", () =>
  withDir(async (dir) => {
    const w = new AtomicWriter(dir);
    const ca = "-----BEGIN CERTIFICATE-----\nsame\n-----END CERTIFICATE-----\n";
    await w.write(payload({ "certs/ca.pem": ca, "certs/1a2b3c4d.0": ca, "bundle.crt": "other" }));
    const first = await Deno.readLink(join(dir, "..data"));
    const pem = await Deno.lstat(join(dir, first, "certs/ca.pem"));
    const hashed = await Deno.lstat(join(dir, first, "certs/1a2b3c4d.0"));
    assert.ok(pem.isFile && hashed.isFile, "both are regular files, not symlinks");
    assert.equal(hashed.ino, pem.ino);
    assert.equal(pem.nlink, 2);
    assert.notEqual((await Deno.stat(join(dir, first, "bundle.crt"))).ino, pem.ino);
    assert.equal(await Deno.readTextFile(join(dir, "certs/1a2b3c4d.0")), ca);

    // The content moves to new paths and a changed file takes it too: still the one inode.
    await w.write(payload({ "certs/ca.0": ca, "bundle.crt": ca, "new.crt": "new" }));
    const second = await Deno.readLink(join(dir, "..data"));
    assert.notEqual(second, first);
    const moved = await Deno.lstat(join(dir, second, "certs/ca.0"));
    const bundle = await Deno.lstat(join(dir, second, "bundle.crt"));
    assert.ok(moved.isFile && bundle.isFile);
    assert.equal(moved.ino, pem.ino, "linked from the live generation");
    assert.equal(bundle.ino, pem.ino);
    assert.equal(moved.nlink, 2, "the old generation's links are gone with its directory");
    assert.equal(await Deno.readTextFile(join(dir, "bundle.crt")), ca);
    assert.equal(await Deno.readTextFile(join(dir, "new.crt")), "new");
  }));

Deno.test("a writer whose directory changed behind its back compares with the disk again", () =>
  withDir(async (dir) => {
    const a = new AtomicWriter(dir);
    const b = new AtomicWriter(dir);
    const one = payload({ "ca.crt": "one", "java/cacerts": "jks" });
    const two = payload({ "ca.crt": "two", "java/cacerts": "jks2" });
    await a.write(one);
    await b.write(two); // `a` still remembers `one`
    assert.equal((await a.write(two)).changed, false, "content on disk already equals `two`");
    assert.equal((await a.write(one)).changed, true);
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "one");
    assert.equal(await Deno.readTextFile(join(dir, "java/cacerts")), "jks");
    // Emptied by someone else: the remembered generation is gone, so the store is rewritten.
    await new AtomicWriter(dir).clear();
    assert.equal((await a.write(one)).changed, true);
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "one");
    // A file replaced inside the live directory is not noticed by a no-op write of the same
    // writer (no re-reading), but a fresh writer (as after a restart) repairs it.
    const live = await Deno.readLink(join(dir, "..data"));
    await Deno.remove(join(dir, live, "ca.crt"));
    await Deno.writeTextFile(join(dir, live, "ca.crt"), "tampered");
    assert.equal((await a.write(one)).changed, false);
    assert.equal((await new AtomicWriter(dir).write(one)).changed, true);
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), "one");
  }));
