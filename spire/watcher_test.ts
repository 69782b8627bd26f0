import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { SvidWatcher } from "./mod.ts";

Deno.test("SvidWatcher.onRecovered: a file restored as it was is a recovery but no update", async () => {
  const dir = await Deno.makeTempDir({ prefix: "spire-watcher-test-" });
  const ca = await DevCa.create(1);
  const svid = await ca.issue({ spiffeId: "spiffe://example.org/w", ttlMs: 60_000 });
  await writeSvidFiles(dir, { ...svid, bundlePem: ca.certPem });
  let recovered = 0;
  let errors = 0;
  const watcher = new SvidWatcher(dir, {
    retryMs: 50,
    onError: () => errors++,
    onRecovered: () => recovered++,
  });
  try {
    await watcher.ready(5_000);
    const updates: unknown[] = [];
    watcher.onUpdate((set) => updates.push(set));
    const before = recovered;
    await Deno.writeTextFile(`${dir}/svid.pem`, "garbage");
    for (let i = 0; i < 150 && errors === 0; i++) await delay(20);
    assert.ok(errors > 0, "the broken file was read");
    assert.equal(recovered, before, "no recovery while broken");
    await Deno.writeTextFile(`${dir}/svid.pem`, svid.certPem);
    for (let i = 0; i < 150 && recovered === before; i++) await delay(20);
    assert.equal(recovered, before + 1);
    assert.equal(updates.length, 0, "the same set is no update");
    assert.equal(watcher.lastError(), undefined);
  } finally {
    watcher.close();
    await Deno.remove(dir, { recursive: true });
  }
});
