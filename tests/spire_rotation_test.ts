/**
 * The example server under certificate rotation without SPIRE: a dev CA rewrites the server's
 * spiffe-helper files about every second (torn windows widened, garbage and a CA rotation
 * included) while a client makes 10 requests per second, each on a new connection.
 */
import assert from "node:assert/strict";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { join } from "node:path";
import { TrustSource } from "../spire/mod.ts";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { requestOnce } from "../workloads/client.ts";
import { startServer } from "../workloads/server.ts";
import { setTimeout as sleep } from "node:timers/promises";

const SERVER_ID = "spiffe://example.org/workload/server";

async function atomicWrite(path: string, text: string) {
  await Deno.writeTextFile(`${path}.tmp`, text);
  await Deno.rename(`${path}.tmp`, path);
}

Deno.test({
  name: "server rotates its certificate every second under load: zero failed requests",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "spire-rotation-test-" });
    const certDir = join(root, "server");
    const trustFile = join(root, "trust.pem");
    const nextCa = await DevCa.create(2);
    let cas = [await DevCa.create(1)];
    let issuing = cas[0];
    const bundle = () => cas.map((ca) => ca.certPem).join("");
    const issue = () =>
      issuing.issue({ spiffeId: SERVER_ID, dnsNames: ["server-service"], ttlMs: 10_000 });
    await writeSvidFiles(certDir, { ...(await issue()), bundlePem: bundle() });
    await atomicWrite(trustFile, bundle());
    const server = await startServer({
      certDir,
      port: 0,
      hostname: "127.0.0.1",
      logRotations: false,
      watcher: { retryMs: 50 },
    });
    const url = new URL(`https://127.0.0.1:${server.port}/`);
    const trust = new TrustSource(trustFile);
    let stop = false;
    let rotations = 0, tornReads = 0;
    server.source.watcher.onUpdate(() => rotations++);

    const rotator = (async () => {
      for (let i = 1; !stop; i++) {
        await sleep(1_000);
        if (stop) break;
        if (i === 4) {
          // CA rotation: the new CA reaches the bundle and the client's trust first.
          cas = [...cas, nextCa];
          await atomicWrite(trustFile, bundle());
        }
        if (i === 6) issuing = cas[1];
        if (i % 3 === 0) {
          // A torn state held well past the debounce: garbage cert with the old key.
          await Deno.writeTextFile(join(certDir, "svid.pem"), "-----BEGIN CERTIFICATE-----\nMIIB");
          await sleep(300);
          tornReads++;
        }
        await writeSvidFiles(certDir, { ...(await issue()), bundlePem: bundle() }, { gapMs: 40 });
      }
    })();

    // A long-lived connection must survive every swap.
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const longLived = () =>
      new Promise<{ port: number; notAfter: string }>((resolve, reject) => {
        https.get(url, {
          agent: keepAlive,
          ca: cas[0].certPem + nextCa.certPem, // fixed: the agent keys sockets by options
          servername: "server-service",
        }, (res) => {
          const socket = res.socket as TLSSocket;
          const out = { port: socket.localPort!, notAfter: socket.getPeerCertificate().valid_to };
          res.resume();
          res.on("end", () => resolve(out));
        }).on("error", reject);
      });

    const failures: string[] = [];
    const notAfters: number[] = [];
    let ok = 0;
    try {
      const before = await longLived();
      const started = Date.now();
      let tick = 0;
      while (Date.now() - started < 12_000) {
        const result = await requestOnce({ url, serverName: "server-service", trust });
        if (result.ok) {
          ok++;
          const t = result.info.notAfter.getTime();
          if (notAfters.at(-1) !== t) notAfters.push(t);
        } else failures.push(result.error);
        if (++tick % 10 === 0) await longLived().then((r) => assert.equal(r.port, before.port));
        await sleep(100);
      }
      const after = await longLived();
      assert.equal(after.port, before.port, "the keep-alive connection was never dropped");
      assert.equal(
        after.notAfter,
        before.notAfter,
        "an established connection keeps its certificate",
      );
    } finally {
      stop = true;
      await rotator;
      keepAlive.destroy();
      await server.close();
      await Deno.remove(root, { recursive: true });
    }
    console.log(
      `${ok} requests ok, ${failures.length} failed, ${notAfters.length} server certificates seen, ` +
        `${rotations} swaps, ${tornReads} held torn states`,
    );
    assert.deepEqual(failures, []);
    assert.ok(ok >= 80, `only ${ok} requests`);
    assert.ok(notAfters.length >= 8, `saw ${notAfters.length} certificates`);
    for (let i = 1; i < notAfters.length; i++) assert.ok(notAfters[i] >= notAfters[i - 1]);
    assert.ok(tornReads >= 3);
  },
});
