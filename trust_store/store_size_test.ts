/**
 * The tmpfs model of `store_size.ts` against a real tmpfs (root only; in CI a missing mount
 * fails): one generation occupies exactly {@link payloadTmpfsBytes}, a swap to a wholly new
 * generation needs the old plus the new (one page less fails with ENOSPC and keeps the old
 * store), hard-linked unchanged files cost nothing (a swap needs exactly the old store plus
 * {@link changedTmpfsBytes}), and a tmpfs grown by remount keeps its files.
 */
import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { join } from "node:path";
import { AtomicWriter } from "./atomic_writer.ts";
import { renderTrustStore } from "./layouts.ts";
import {
  changedTmpfsBytes,
  payloadTmpfsBytes,
  TMPFS_PAGE_BYTES,
  tmpfsSizeFor,
} from "./store_size.ts";
import { buildTrustSet } from "./trust_set.ts";
import { makeCert } from "./testdata/pki.ts";
import { run } from "./testdata/run.ts";

const isRoot = Deno.uid() === 0;
const ci = Deno.env.get("CI") === "true";
const ignore = !isRoot && !ci;

const pems: string[] = [];
for (let i = 0; i < 120; i++) pems.push((await makeCert({ subject: `CN=Size CA ${i}, O=t` })).pem);

async function store(from: number, to: number) {
  const set = await buildTrustSet([{
    name: `cas ${from}-${to}`,
    text: pems.slice(from, to).join(""),
  }]);
  return renderTrustStore("rhel", set);
}

function used(dir: string): number {
  const fs = statfsSync(dir);
  return (fs.blocks - fs.bfree) * fs.bsize;
}

async function withTmpfs<T>(bytes: number, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "store_size_test_" });
  const r = await run("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=0755`, "tmpfs", dir]);
  assert.equal(r.code, 0, `mount tmpfs (run as root): ${r.stderr}`);
  try {
    return await fn(dir);
  } finally {
    await run("umount", [dir]);
    await Deno.remove(dir, { recursive: true });
  }
}

function bundle(dir: string): string {
  return Deno.readTextFileSync(join(dir, "pem", "tls-ca-bundle.pem"));
}

Deno.test({
  name:
    "a generation occupies exactly payloadTmpfsBytes; a swap needs old + new, one page less fails and keeps the old store",
  ignore,
  async fn() {
    const a = await store(0, 60);
    const b = await store(60, 120);
    const [bytesA, bytesB] = [payloadTmpfsBytes(a), payloadTmpfsBytes(b)];
    await withTmpfs(bytesA + bytesB, async (dir) => {
      const w = new AtomicWriter(dir, { fsync: false });
      await w.write(a);
      assert.equal(used(dir), bytesA);
      await w.write(b);
      assert.equal(used(dir), bytesB);
      assert.equal(bundle(dir), new TextDecoder().decode(b.get("pem/tls-ca-bundle.pem")));
    });
    await withTmpfs(bytesA + bytesB - TMPFS_PAGE_BYTES, async (dir) => {
      const w = new AtomicWriter(dir, { fsync: false });
      await w.write(a);
      await assert.rejects(w.write(b), (e: unknown) => (e as { code?: string }).code === "ENOSPC");
      assert.equal(bundle(dir), new TextDecoder().decode(a.get("pem/tls-ca-bundle.pem")));
      assert.equal(used(dir), bytesA);
    });
  },
});

Deno.test({
  name:
    "unchanged files are hard-linked: adding one CA needs exactly changedTmpfsBytes beside the old store",
  ignore,
  async fn() {
    const a = await store(0, 60);
    const b = await store(0, 61);
    const changed = changedTmpfsBytes(b, a);
    assert.equal(changedTmpfsBytes(b), payloadTmpfsBytes(b));
    assert.ok(changed < payloadTmpfsBytes(b) / 2, `${changed} of ${payloadTmpfsBytes(b)}`);
    await withTmpfs(payloadTmpfsBytes(a) + changed, async (dir) => {
      const w = new AtomicWriter(dir, { fsync: false });
      await w.write(a);
      await w.write(b);
      assert.equal(used(dir), payloadTmpfsBytes(b));
    });
    await withTmpfs(payloadTmpfsBytes(a) + changed - TMPFS_PAGE_BYTES, async (dir) => {
      const w = new AtomicWriter(dir, { fsync: false });
      await w.write(a);
      await assert.rejects(w.write(b), (e: unknown) => (e as { code?: string }).code === "ENOSPC");
    });
  },
});

Deno.test({
  name:
    "a tmpfs sized by tmpfsSizeFor holds a rotation; remounted larger it keeps the store and takes a bigger one",
  ignore,
  async fn() {
    const a = await store(0, 40);
    const b = await store(40, 80);
    const big = await store(0, 120);
    await withTmpfs(tmpfsSizeFor(payloadTmpfsBytes(a)), async (dir) => {
      const w = new AtomicWriter(dir, { fsync: false });
      await w.write(a);
      await w.write(b);
      await assert.rejects(
        w.write(big),
        (e: unknown) => (e as { code?: string }).code === "ENOSPC",
      );
      const r = await run("mount", [
        "-o",
        `remount,size=${tmpfsSizeFor(payloadTmpfsBytes(big))}`,
        dir,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(bundle(dir), new TextDecoder().decode(b.get("pem/tls-ca-bundle.pem")));
      await w.write(big);
      assert.equal(used(dir), payloadTmpfsBytes(big));
    });
  },
});
