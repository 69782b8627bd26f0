import assert from "node:assert/strict";
import { join } from "node:path";
import { DevCa, type IssuedSvid, writeSvidFiles } from "../x509/mod.ts";
import {
  loadSvidSet,
  SvidChainError,
  SvidExpiredError,
  SvidFileError,
  SvidKeyMismatchError,
  SvidWatcher,
} from "./mod.ts";
import { setTimeout as delay } from "node:timers/promises";

const ID = "spiffe://example.org/workload/server";

async function fixture() {
  const dir = await Deno.makeTempDir({ prefix: "spire-svid-test-" });
  const ca = await DevCa.create(1);
  const issue = (ttlMs = 60_000) => ca.issue({ spiffeId: ID, dnsNames: ["server-service"], ttlMs });
  return { dir, ca, issue };
}

async function write(dir: string, name: string, text: string) {
  await Deno.writeTextFile(join(dir, name), text);
}

Deno.test("loadSvidSet accepts a consistent set and reads its SPIFFE ID", async () => {
  const { dir, ca, issue } = await fixture();
  try {
    const svid = await issue();
    await writeSvidFiles(dir, { ...svid, bundlePem: ca.certPem });
    const set = await loadSvidSet(dir);
    assert.equal(set.spiffeId?.toString(), ID);
    assert.equal(set.bundle.length, 1);
    assert.equal(set.intermediates.length, 0);
    assert.equal(set.notAfter.getTime(), svid.notAfter.getTime());
    const again = await loadSvidSet(dir);
    assert.equal(again.id, set.id, "same files, same id");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadSvidSet rejects each torn state spiffe-helper can leave", async (t) => {
  const { dir, ca, issue } = await fixture();
  const other = await DevCa.create(2);
  try {
    const old: IssuedSvid = await issue();
    const next: IssuedSvid = await issue();
    await writeSvidFiles(dir, { ...old, bundlePem: ca.certPem });

    await t.step("empty cert (truncated, not yet rewritten)", async () => {
      await write(dir, "svid.pem", "");
      await assert.rejects(
        loadSvidSet(dir),
        (e) => e instanceof SvidFileError && /empty/.test(e.message),
      );
    });
    await t.step("half-written cert", async () => {
      await write(dir, "svid.pem", next.certPem.slice(0, 200));
      await assert.rejects(
        loadSvidSet(dir),
        (e) => e instanceof SvidFileError && /not terminated/.test(e.message),
      );
    });
    await t.step("new cert + old key", async () => {
      await write(dir, "svid.pem", next.certPem);
      await assert.rejects(loadSvidSet(dir), SvidKeyMismatchError);
    });
    await t.step("empty key", async () => {
      await write(dir, "svid_key.pem", "");
      await assert.rejects(
        loadSvidSet(dir),
        (e) => e instanceof SvidFileError && e.message.includes("svid_key.pem"),
      );
    });
    await t.step("new cert + new key from a new CA + old bundle", async () => {
      const fromOther = await other.issue({
        spiffeId: ID,
        dnsNames: ["server-service"],
        ttlMs: 60_000,
      });
      await write(dir, "svid.pem", fromOther.certPem);
      await write(dir, "svid_key.pem", fromOther.keyPem);
      await assert.rejects(loadSvidSet(dir), SvidChainError);
    });
    await t.step("garbage in every file", async () => {
      await write(dir, "svid.pem", "not a certificate\n");
      await assert.rejects(loadSvidSet(dir), SvidFileError);
      await write(
        dir,
        "svid.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
      );
      await assert.rejects(
        loadSvidSet(dir),
        (e) => e instanceof SvidFileError && /not a valid certificate/.test(e.message),
      );
      await write(dir, "svid.pem", next.certPem);
      await write(dir, "svid_key.pem", next.certPem);
      await assert.rejects(
        loadSvidSet(dir),
        (e) => e instanceof SvidFileError && /PRIVATE KEY/.test(e.message),
      );
    });
    await t.step("missing bundle", async () => {
      await write(dir, "svid_key.pem", next.keyPem);
      await Deno.remove(join(dir, "svid_bundle.pem"));
      await assert.rejects(
        loadSvidSet(dir),
        (e) => e instanceof SvidFileError && /does not exist/.test(e.message),
      );
    });
    await t.step("the completed new set is accepted", async () => {
      await write(dir, "svid_bundle.pem", ca.certPem);
      const set = await loadSvidSet(dir);
      assert.equal(set.notAfter.getTime(), next.notAfter.getTime());
    });
    await t.step("an expired leaf is rejected", async () => {
      await assert.rejects(
        loadSvidSet(dir, {}, { now: new Date(next.notAfter.getTime() + 1_000) }),
        SvidExpiredError,
      );
    });
    await t.step("a bundle with the new CA too verifies a leaf of either CA", async () => {
      await write(dir, "svid_bundle.pem", other.certPem + ca.certPem);
      assert.ok(await loadSvidSet(dir));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SvidWatcher keeps the last good set through torn writes, then takes the new one", async () => {
  const { dir, ca, issue } = await fixture();
  const errors: string[] = [];
  const first = await issue();
  await writeSvidFiles(dir, { ...first, bundlePem: ca.certPem });
  const watcher = new SvidWatcher(dir, { retryMs: 50, onError: (e) => errors.push(e.name) });
  try {
    const ready = await watcher.ready(5_000);
    assert.equal(ready.notAfter.getTime(), first.notAfter.getTime());
    const updates: Date[] = [];
    watcher.onUpdate((set) => updates.push(set.notAfter));

    const next = await ca.issue({ spiffeId: ID, dnsNames: ["server-service"], ttlMs: 120_000 });
    // cert → pause → key → pause → bundle, as spiffe-helper does, with wide torn windows.
    await write(dir, "svid.pem", "");
    await delay(300);
    assert.equal(watcher.current()?.notAfter.getTime(), first.notAfter.getTime(), "empty cert");
    await write(dir, "svid.pem", next.certPem);
    await delay(300);
    assert.equal(watcher.current()?.notAfter.getTime(), first.notAfter.getTime(), "old key");
    await write(dir, "svid_key.pem", "garbage");
    await delay(300);
    assert.equal(watcher.current()?.notAfter.getTime(), first.notAfter.getTime(), "garbage key");
    assert.ok(errors.includes("SvidKeyMismatchError"), errors.join());
    assert.ok(errors.includes("SvidFileError"), errors.join());
    assert.equal(updates.length, 0);
    await write(dir, "svid_key.pem", next.keyPem);
    await write(dir, "svid_bundle.pem", ca.certPem);
    const deadline = Date.now() + 3_000;
    while (updates.length === 0 && Date.now() < deadline) {
      await delay(20);
    }
    assert.deepEqual(updates.map((d) => d.getTime()), [next.notAfter.getTime()]);
    assert.equal(watcher.lastError(), undefined);
  } finally {
    watcher.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SvidWatcher.ready rejects when closed first and tolerates a missing directory", async () => {
  const watcher = new SvidWatcher("/nonexistent/spire-cacerts", { retryMs: 20 });
  const ready = watcher.ready();
  await delay(100);
  assert.ok(watcher.lastError());
  watcher.close();
  await assert.rejects(ready, { name: "SvidWatcherClosedError" });
});

Deno.test("SvidWatcher watches a directory that appeared with its files between two retries", async () => {
  const { dir, ca, issue } = await fixture();
  const certDir = join(dir, "certs");
  // A long retry: the directory and all three files appear before the next read.
  const watcher = new SvidWatcher(certDir, { retryMs: 400, resyncMs: 60_000 });
  try {
    await delay(50);
    await Deno.mkdir(certDir);
    const first = await issue();
    await writeSvidFiles(certDir, { ...first, bundlePem: ca.certPem });
    await watcher.ready(5_000);
    const next = await issue(120_000);
    await writeSvidFiles(certDir, { ...next, bundlePem: ca.certPem });
    const deadline = Date.now() + 3_000;
    while (watcher.current()?.notAfter.getTime() !== next.notAfter.getTime()) {
      assert.ok(Date.now() < deadline, "the rotation is seen through the directory watch");
      await delay(20);
    }
  } finally {
    watcher.close();
    await Deno.remove(dir, { recursive: true });
  }
});
