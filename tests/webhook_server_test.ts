import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { request } from "node:https";
import { connect } from "node:tls";
import { connect as tcpConnect } from "node:net";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { createLogger } from "../cli/mod.ts";
import { WebhookMetrics } from "../webhook/metrics.ts";
import { startWebhookServer, type WebhookServerOptions } from "../webhook/server.ts";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { type CertificateFiles, createCa, waitFor, writeLocalhostSvid } from "./harness/mod.ts";

/** One HTTPS POST to the webhook, trusting `ca` for `localhost`. */
function post(
  port: number,
  ca: string,
  body: string | Uint8Array,
  type = "application/json",
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      servername: "localhost",
      ca,
      method: "POST",
      path: "/mutate",
      headers: { "content-type": type, "content-length": body.length },
      agent: false,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          text: new TextDecoder().decode(Buffer.concat(chunks)),
        }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** One raw HTTP/1.1 request over TLS (headers exactly as given); resolves with the status line. */
function raw(port: number, ca: string, head: string, body = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ca }, () => {
      socket.write(`${head}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    });
    let text = "";
    socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
    socket.on("end", () => resolve(text.split("\r\n")[0]));
    socket.on("error", reject);
  });
}

Deno.test({
  name: "server: not ready without an SVID, then serves /mutate over TLS with limits",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "webhook-server-" });
    const certDir = join(dir, "certs");
    await Deno.mkdir(certDir);
    const lines: string[] = [];
    const metrics = new WebhookMetrics();
    const server = await startWebhookServer({
      certDir,
      port: 0,
      healthPort: 0,
      host: "127.0.0.1",
      app: {
        driverName: DRIVER_NAME,
        className: "spire-ca",
        maxBodyBytes: 64 * 1024,
      },
      log: createLogger("debug", (line) => lines.push(line)),
      metrics,
    });
    try {
      const health = `http://127.0.0.1:${server.healthPort}`;
      const ready = await fetch(`${health}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(await ready.text(), /not ready: no valid SVID in .*certs yet/);
      assert.equal(await (await fetch(`${health}/healthz`)).text(), "ok\n");

      // Files as spiffe-helper writes them: cert, then key, then bundle.
      const ca = await createCa(dir, "ca", "test-spire-ca");
      await writeLocalhostSvid(ca, dir, certDir);
      await server.ready;
      await waitFor("ready", async () => (await fetch(`${health}/readyz`)).status === 200, {
        timeoutMs: 5_000,
      });
      const port = server.port()!;

      const review = JSON.stringify(podCreateReview({
        metadata: { labels: { [INJECT_LABEL]: "true" } },
        spec: { containers: [{ name: "c", image: "i" }] },
      }, { uid: "u" }));
      const ok = await post(port, ca.certPem, review);
      assert.equal(ok.status, 200);
      assert.equal(JSON.parse(ok.text).response.patchType, "JSONPatch");

      const big = await post(port, ca.certPem, "x".repeat(100 * 1024));
      assert.equal(big.status, 413);
      assert.match(JSON.parse(big.text).error, /exceeds 65536 bytes/);
      const wrongType = await post(port, ca.certPem, review, "application/yaml");
      assert.equal(wrongType.status, 415);
      const secret = "do-not-log-this-body";
      const notJson = await post(port, ca.certPem, `{"${secret}`);
      assert.equal(notJson.status, 400);

      // An empty Host header is answered like any request (no 500), a malformed one is a 400.
      const json = "content-type: application/json";
      assert.equal(
        await raw(port, ca.certPem, `POST /mutate HTTP/1.1\r\nhost: \r\n${json}`, review),
        "HTTP/1.1 200 OK",
      );
      assert.equal(
        await raw(port, ca.certPem, `POST /other HTTP/1.1\r\nhost:\r\n${json}`, "{}"),
        "HTTP/1.1 404 Not Found",
      );
      assert.equal(
        await raw(port, ca.certPem, `POST /mutate HTTP/1.1\r\nhost: a@b\r\n${json}`, review),
        "HTTP/1.1 400 Bad Request",
      );

      const text = await (await fetch(`${health}/metrics`)).text();
      assert.match(text, /spire_cacerts_webhook_admissions_total\{result="mutated"\} 2/);
      // The 413, the 415 and the 400: the body limit is the app's, so over HTTPS too it counts.
      assert.match(text, /spire_cacerts_webhook_admissions_total\{result="bad_request"\} 3/);
      assert.match(text, /spire_cacerts_webhook_admission_duration_seconds_count 5/);
      const refused = (reason: string) =>
        Number(
          text.match(
            new RegExp(
              `spire_cacerts_webhook_requests_refused_total\\{reason="${reason}"\\} (\\d+)`,
            ),
          )?.[1],
        );
      assert.deepEqual(
        ["body_too_large", "unsupported_media_type", "invalid_json", "not_found", "invalid_http"]
          .map(refused),
        [1, 1, 1, 1, 1],
      );
      // Each refused request is logged once, with its reason and without body contents.
      const logged = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "request refused");
      assert.deepEqual(logged.map((l) => [l.level, l.reason, l.status]), [
        ["warn", "body_too_large", 413],
        ["warn", "unsupported_media_type", 415],
        ["warn", "invalid_json", 400],
        ["info", "not_found", 404],
        ["warn", "invalid_http", 400],
      ]);
      assert.ok(!lines.some((l) => l.includes(secret)), "no body contents in the log");
      assert.ok(!lines.some((l) => JSON.parse(l).msg === "admission refused"));
      assert.ok(lines.some((l) => JSON.parse(l).msg === "admission endpoint listening"));
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A server on a fresh SVID directory with a good localhost SVID, logging JSON lines to `lines`. */
async function servedSvid(extra: Partial<WebhookServerOptions> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "webhook-server-" });
  const certDir = join(dir, "certs");
  await Deno.mkdir(certDir);
  const ca = await createCa(dir, "ca", "test-spire-ca");
  const leaf = await writeLocalhostSvid(ca, dir, certDir);
  const lines: { level: string; msg: string; [key: string]: unknown }[] = [];
  const metrics = new WebhookMetrics();
  const server = await startWebhookServer({
    certDir,
    port: 0,
    healthPort: 0,
    host: "127.0.0.1",
    app: { driverName: DRIVER_NAME, className: "spire-ca" },
    log: createLogger("debug", (line) => lines.push(JSON.parse(line))),
    metrics,
    ...extra,
  });
  await server.ready;
  const health = `http://127.0.0.1:${server.healthPort}`;
  return { dir, certDir, ca, leaf, lines, metrics, server, health };
}

/** The value of one series in the exposition text (NaN when absent). */
async function scrape(health: string, series: string): Promise<number> {
  const text = await (await fetch(`${health}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

const notAfterSeconds = (leaf: CertificateFiles) =>
  new Date(new X509Certificate(leaf.certPem).validTo).getTime() / 1000;

const RELOAD_FAILURES = "spire_cacerts_webhook_svid_reload_failures_total";
const EXPIRY = "spire_cacerts_webhook_svid_expiry_timestamp_seconds";

Deno.test({
  name:
    "server: SVID files that stay broken give one warning and a moving counter; the recovery one info line",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { dir, certDir, ca, leaf, lines, server, health } = await servedSvid();
    try {
      assert.equal(await scrape(health, RELOAD_FAILURES), 0);
      assert.equal(await scrape(health, EXPIRY), notAfterSeconds(leaf));
      await Deno.writeTextFile(join(certDir, "svid.pem"), "not a certificate\n");
      const first = await waitFor("failures counted", async () => {
        const n = await scrape(health, RELOAD_FAILURES);
        return n > 0 && n;
      }, { timeoutMs: 10_000 });
      await waitFor("counter moving", async () => (await scrape(health, RELOAD_FAILURES)) > first, {
        timeoutMs: 10_000,
      });
      // Broken for a while now: still one warning, and the last good SVID still served and ready.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const warnings = lines.filter((l) => l.level === "warn");
      assert.deepEqual(warnings.map((l) => l.msg), [
        "SVID reload failed; serving the last good SVID",
      ]);
      assert.match(String(warnings[0].error), /svid\.pem/);
      assert.equal((await fetch(`${health}/readyz`)).status, 200);
      assert.equal(await scrape(health, EXPIRY), notAfterSeconds(leaf));

      const next = await writeLocalhostSvid(ca, dir, certDir, "leaf-2");
      await waitFor("new SVID served", async () =>
        (await scrape(health, EXPIRY)) > 0 &&
        lines.some((l) => l.msg === "SVID files usable again"), { timeoutMs: 10_000 });
      assert.equal(await scrape(health, EXPIRY), notAfterSeconds(next));
      const after = await scrape(health, RELOAD_FAILURES);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(await scrape(health, RELOAD_FAILURES), after, "no failures once fixed");
      assert.equal(lines.filter((l) => l.msg === "SVID files usable again").length, 1);
      assert.equal(lines.filter((l) => l.level === "warn").length, 1);
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "server: /readyz fails once a short-lived SVID is within the expiry margin",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // An 8 s SVID against a 60 s margin: the margin is cut to a quarter of the lifetime (2 s),
    // so it is ready at first (a fixed 60 s margin would never let it be) and not ready ~6 s later.
    const dir = await Deno.makeTempDir({ prefix: "webhook-expiry-" });
    const ca = await DevCa.create(1);
    const svid = await ca.issue({
      spiffeId: "spiffe://example.org/spire-cacerts/webhook",
      dnsNames: ["localhost"],
      ttlMs: 8_000,
      backdateMs: 0,
    });
    await writeSvidFiles(dir, { ...svid, bundlePem: ca.certPem });
    const server = await startWebhookServer({
      certDir: dir,
      port: 0,
      healthPort: 0,
      host: "127.0.0.1",
      app: { driverName: DRIVER_NAME, className: "spire-ca" },
      log: createLogger("warn", () => {}),
      metrics: new WebhookMetrics(),
      expiryMarginMs: 60_000,
    });
    try {
      await server.ready;
      const health = `http://127.0.0.1:${server.healthPort}`;
      const notAfter = new Date(new X509Certificate(svid.certPem).validTo);
      assert.equal(await scrape(health, EXPIRY), notAfter.getTime() / 1000);
      const before = await fetch(`${health}/readyz`);
      await before.body?.cancel();
      const text = await waitFor("503 within the margin", async () => {
        const r = await fetch(`${health}/readyz`);
        const body = await r.text();
        return r.status === 503 && body;
      }, { timeoutMs: 30_000, intervalMs: 100 });
      assert.equal(before.status, 200, "ready while outside the margin");
      assert.ok(Date.now() < notAfter.getTime(), "not ready before it expired");
      assert.equal(
        text,
        `not ready: serving SVID expires at ${notAfter.toISOString()}, within the 2 s margin, ` +
          "and no renewed one was read\n",
      );
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** One TLS handshake trusting `ca` (expected to fail when `ca` did not sign the server). */
function handshake(port: number, ca: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ca }, () => {
      socket.destroy();
      resolve();
    });
    socket.on("error", () => resolve());
  });
}

/** A plain-text HTTP request to the TLS port: garbage to the TLS server. */
function garbage(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port }, () => {
      socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    });
    // The server answers with an alert and closes its side: read it (a paused socket never
    // sees the end) and close ours.
    socket.resume();
    socket.on("end", () => (socket.destroy(), resolve()));
    socket.on("close", () => resolve());
    socket.on("error", () => resolve());
  });
}

Deno.test({
  name: "server: failed TLS handshakes are counted by reason and logged once, then summarised",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { dir, lines, server, health, ca } = await servedSvid();
    try {
      const port = server.port()!;
      const other = await createCa(dir, "other", "someone-elses-ca");
      for (let i = 0; i < 5; i++) await handshake(port, other.certPem);
      for (let i = 0; i < 20; i++) await garbage(port);
      await handshake(port, ca.certPem);
      const failures = (reason: string) =>
        scrape(health, `spire_cacerts_webhook_tls_handshake_failures_total{reason="${reason}"}`);
      await waitFor(
        "all counted",
        async () => (await failures("client_alert")) === 5 && (await failures("protocol")) === 20,
        {
          timeoutMs: 10_000,
          detail: () => JSON.stringify(lines.slice(-5)),
        },
      );
      assert.ok(Number.isNaN(await failures("other")), "the good handshake is not counted");
      const logged = () => lines.filter((l) => l.msg.startsWith("TLS handshake"));
      assert.deepEqual(logged().map((l) => [l.level, l.msg, l.reason]), [
        ["warn", "TLS handshake failed", "client_alert"],
      ]);
      await server.close();
      // Closing reports what the interval left out, in one line.
      assert.deepEqual(logged().slice(1).map((l) => [l.level, l.msg, l.suppressed]), [
        ["warn", "TLS handshakes failed", 24],
      ]);
      assert.deepEqual(logged()[1].byReason, { client_alert: 4, protocol: 20 });
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
