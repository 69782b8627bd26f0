/**
 * Fault: the webhook server and the example server rotate their SVIDs every second (rewritten in
 * place the way spiffe-helper does, cert → key → bundle, with the torn windows widened) while
 * clients hammer both, each request on a new TLS connection, plus one keep-alive connection per
 * server. Across 12 rotations: zero failed requests, every served certificate is one that was
 * issued, new connections move on to each new certificate (the serial changes, never back), and
 * the last one is served within seconds of being written.
 */
import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../../api/mod.ts";
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { join } from "node:path";
import { createLogger } from "../../cli/mod.ts";
import { WebhookMetrics } from "../../webhook/metrics.ts";
import { podCreateReview } from "../../webhook/testdata/admission_review.ts";
import { startWebhookServer } from "../../webhook/server.ts";
import { DevCa, writeSvidFiles } from "../../x509/mod.ts";
import { startServer } from "../../workloads/server.ts";
import { waitFor } from "../harness/mod.ts";
import { sleep } from "./helpers.ts";

const ROTATIONS = 12;

interface Target {
  name: string;
  port: number;
  serverName: string;
  method: "GET" | "POST";
  path: string;
  body?: string;
  check(status: number, text: string): string | undefined;
}

interface Outcome {
  serial?: string;
  error?: string;
}

/** One request; `agent` undefined means a new connection. */
function requestOnce(target: Target, ca: string, agent?: https.Agent): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = https.request({
      host: "127.0.0.1",
      port: target.port,
      servername: target.serverName,
      ca,
      method: target.method,
      path: target.path,
      agent: agent ?? false,
      headers: target.body
        ? { "content-type": "application/json", "content-length": Buffer.byteLength(target.body) }
        : {},
      timeout: 10_000,
    }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber?.toUpperCase();
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        const error = target.check(res.statusCode ?? 0, Buffer.concat(chunks).toString());
        resolve(error ? { serial, error } : { serial });
      });
      res.on("error", (e) => resolve({ error: `response: ${e.message}` }));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (e) => resolve({ error: e.message }));
    req.end(target.body);
  });
}

const REVIEW = JSON.stringify(podCreateReview({
  metadata: { labels: { [INJECT_LABEL]: "true" } },
  spec: { containers: [{ name: "c", image: "i" }] },
}, { uid: "rotation" }));

Deno.test({
  name: "fault: webhook and example server under load while their SVIDs rotate every second",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "cacerts-fault-rotation-" });
    const ca = await DevCa.create(1);
    const ids = {
      webhook: {
        spiffeId: "spiffe://example.org/ns/spire-cacerts/sa/webhook",
        dns: "spire-cacerts-webhook.spire-cacerts.svc",
      },
      server: { spiffeId: "spiffe://example.org/workload/server", dns: "server-service" },
    };
    type Name = keyof typeof ids;
    const issued: Record<Name, { serial: string; at: number }[]> = { webhook: [], server: [] };
    const rotate = async (name: Name, gapMs: number) => {
      const svid = await ca.issue({
        spiffeId: ids[name].spiffeId,
        dnsNames: [ids[name].dns],
        ttlMs: 60_000,
      });
      const serial = new X509Certificate(svid.certPem).serialNumber.toUpperCase();
      await writeSvidFiles(join(root, name), { ...svid, bundlePem: ca.certPem }, { gapMs });
      issued[name].push({ serial, at: performance.now() });
    };
    await rotate("webhook", 0);
    await rotate("server", 0);

    const webhook = await startWebhookServer({
      certDir: join(root, "webhook"),
      port: 0,
      healthPort: 0,
      host: "127.0.0.1",
      app: { driverName: DRIVER_NAME, className: "spire-ca" },
      log: createLogger("error", () => {}),
      metrics: new WebhookMetrics(),
    });
    const server = await startServer({
      certDir: join(root, "server"),
      port: 0,
      hostname: "127.0.0.1",
      logRotations: false,
    });
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    let stop = false;
    try {
      await webhook.ready;
      const targets: Record<Name, Target> = {
        webhook: {
          name: "webhook",
          port: webhook.port()!,
          serverName: ids.webhook.dns,
          method: "POST",
          path: "/mutate",
          body: REVIEW,
          check: (status, text) =>
            status === 200 && JSON.parse(text).response?.uid === "rotation"
              ? undefined
              : `HTTP ${status}: ${text.slice(0, 200)}`,
        },
        server: {
          name: "server",
          port: server.port,
          serverName: ids.server.dns,
          method: "GET",
          path: "/",
          check: (status, text) =>
            status === 200 && text.startsWith(`hello from ${ids.server.spiffeId}`)
              ? undefined
              : `HTTP ${status}: ${text.slice(0, 200)}`,
        },
      };

      const failures: string[] = [];
      const counts = { webhook: 0, server: 0, keepAlive: 0 };
      const firstSeen: Record<Name, Map<string, number>> = {
        webhook: new Map(),
        server: new Map(),
      };
      const regressions: string[] = [];
      // Two new-connection loops per server; each loop checks its own serials never go back.
      const loops = (["webhook", "server", "webhook", "server"] as Name[]).map(async (name, i) => {
        let lastIndex = -1;
        while (!stop) {
          const out = await requestOnce(targets[name], ca.certPem);
          if (out.error) {
            failures.push(`${name} loop ${i}: ${out.error}`);
            continue;
          }
          counts[name]++;
          const index = issued[name].findIndex((s) => s.serial === out.serial);
          if (index < 0) failures.push(`${name}: served serial ${out.serial} was never issued`);
          if (index < lastIndex) {
            regressions.push(`${name} loop ${i}: serial went back ${lastIndex} -> ${index}`);
          }
          lastIndex = Math.max(lastIndex, index);
          if (out.serial && !firstSeen[name].has(out.serial)) {
            firstSeen[name].set(out.serial, performance.now());
          }
        }
      });
      const longLived = (async () => {
        while (!stop) {
          for (const name of ["webhook", "server"] as Name[]) {
            const out = await requestOnce(targets[name], ca.certPem, keepAlive);
            if (out.error) failures.push(`${name} keep-alive: ${out.error}`);
            else counts.keepAlive++;
          }
          await sleep(200);
        }
      })();

      for (let i = 0; i < ROTATIONS; i++) {
        await sleep(1_000);
        await Promise.all([rotate("webhook", 30), rotate("server", 30)]);
      }
      for (const name of ["webhook", "server"] as Name[]) {
        const last = issued[name].at(-1)!.serial;
        await waitFor(`${name} serves its last certificate`, () => firstSeen[name].has(last), {
          timeoutMs: 10_000,
        });
      }
      stop = true;
      await Promise.all([...loops, longLived]);

      const lags: string[] = [];
      for (const name of ["webhook", "server"] as Name[]) {
        const seen = issued[name].filter((s) => firstSeen[name].has(s.serial));
        const worst = Math.max(...seen.map((s) => firstSeen[name].get(s.serial)! - s.at));
        lags.push(
          `${name}: ${seen.length}/${issued[name].length} certificates seen, ` +
            `worst lag ${worst.toFixed(0)} ms`,
        );
        // Rotations are 1 s apart: each certificate is live long enough to be seen.
        assert.ok(
          seen.length >= ROTATIONS - 1,
          `${name}: new connections saw only ${seen.length} of ${issued[name].length} certificates`,
        );
        assert.ok(worst < 5_000, `${name}: a certificate took ${worst} ms to be served`);
      }
      console.log(
        `${counts.webhook} webhook + ${counts.server} server requests on new connections, ` +
          `${counts.keepAlive} on keep-alive ones, ${failures.length} failed; ${lags.join("; ")}`,
      );
      assert.deepEqual(failures, []);
      assert.deepEqual(regressions, []);
      assert.ok(counts.webhook >= 100 && counts.server >= 100, JSON.stringify(counts));
      assert.ok(counts.keepAlive >= 20, JSON.stringify(counts));
    } finally {
      stop = true;
      keepAlive.destroy();
      await webhook.close();
      await server.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});
