import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { request } from "node:https";
import { connect } from "node:tls";
import { join } from "node:path";
import { createLogger } from "../cli/mod.ts";
import { WebhookMetrics } from "../webhook/metrics.ts";
import { startWebhookServer } from "../webhook/server.ts";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import { createCa, waitFor, writeLocalhostSvid } from "./harness/mod.ts";

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
