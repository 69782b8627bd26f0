import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { request } from "node:https";
import { join } from "node:path";
import { createLogger } from "../cli/mod.ts";
import { WebhookMetrics } from "../webhook/metrics.ts";
import { startWebhookServer } from "../webhook/server.ts";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import { createCa, issueCertificate, waitFor } from "./harness/mod.ts";

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
      const leaf = await issueCertificate(ca, dir, "leaf", {
        commonName: "localhost",
        dnsNames: ["localhost"],
        usage: "server",
      });
      await Deno.writeTextFile(join(certDir, "svid.pem"), leaf.certPem);
      await Deno.writeTextFile(join(certDir, "svid_key.pem"), leaf.keyPem);
      await Deno.writeTextFile(join(certDir, "svid_bundle.pem"), ca.certPem);
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

      const text = await (await fetch(`${health}/metrics`)).text();
      assert.match(text, /spire_cacerts_webhook_admissions_total\{result="mutated"\} 1/);
      // The 413 and the 415 both: the body limit is the app's, so over HTTPS too it is counted.
      assert.match(text, /spire_cacerts_webhook_admissions_total\{result="bad_request"\} 2/);
      assert.match(text, /spire_cacerts_webhook_admission_duration_seconds_count 3/);
      assert.ok(lines.some((l) => JSON.parse(l).msg === "admission endpoint listening"));
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
