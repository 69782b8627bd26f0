/**
 * The API server's webhook client (Go `net/http`) reuses an idle connection for up to 90 s and
 * does not retry a POST that meets a connection the server has just closed. The webhook keeps
 * idle connections open longer than that (`KEEP_ALIVE_TIMEOUT_MS`, 120 s). This test drives it
 * with `admission-client`, a Go client with the apiserver's transport, over idle gaps of 1 s and
 * 6 s: the 6 s gap is past node's 5 s default, which would close the connection so that the
 * third call could not reuse it. bench/keepalive_bench.ts covers 30 s and 89 s gaps.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { createLogger } from "../cli/mod.ts";
import { WebhookMetrics } from "../webhook/metrics.ts";
import { KEEP_ALIVE_TIMEOUT_MS, startWebhookServer } from "../webhook/server.ts";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import { createCa, needsTools, writeLocalhostSvid } from "./harness/mod.ts";
import { runAdmissionClient } from "./harness/admission_client.ts";

Deno.test({
  name: "webhook: Go's net/http client reuses its connection after 1 s and 6 s idle",
  ...needsTools(["admission-client"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    assert.ok(KEEP_ALIVE_TIMEOUT_MS > 90_000, "longer than Go's 90 s idle reuse");
    const dir = await Deno.makeTempDir({ prefix: "webhook-keepalive-" });
    const certDir = join(dir, "certs");
    await Deno.mkdir(certDir);
    const ca = await createCa(dir, "ca", "test-spire-ca");
    await writeLocalhostSvid(ca, dir, certDir);
    const bodyFile = join(dir, "review.json");
    await Deno.writeTextFile(
      bodyFile,
      JSON.stringify(podCreateReview({
        metadata: { labels: { [INJECT_LABEL]: "true" } },
        spec: { containers: [{ name: "c", image: "i" }] },
      }, { uid: "keepalive" })),
    );
    const server = await startWebhookServer({
      certDir,
      port: 0,
      healthPort: 0,
      host: "127.0.0.1",
      app: { driverName: DRIVER_NAME, className: "spire-ca", maxBodyBytes: 64 * 1024 },
      log: createLogger("warn", () => {}),
      metrics: new WebhookMetrics(),
    });
    try {
      await server.ready;
      const result = await runAdmissionClient({
        url: `https://127.0.0.1:${server.port()}/mutate`,
        caFile: ca.certPath,
        serverName: "localhost",
        bodyFile,
        gapsMs: [1_000, 6_000],
      });
      const summary = JSON.stringify(result.calls);
      assert.equal(result.calls.length, 3, summary);
      assert.equal(result.failed, 0, summary);
      for (const call of result.calls) {
        assert.equal(call.status, 200, summary);
        assert.equal(call.error, undefined, summary);
        assert.equal(call.uid, "keepalive", summary);
        assert.equal(call.allowed, true, summary);
      }
      const [first, ...later] = [...result.calls].sort((a, b) => a.index - b.index);
      assert.equal(first.reused, false, `the first call opens the connection: ${summary}`);
      for (const call of later) {
        assert.equal(call.reused, true, `call ${call.index} after ${call.gapMs} ms: ${summary}`);
        assert.equal(call.wasIdle, true, summary);
        assert.ok(call.idleMs >= call.gapMs, `it idled through the gap: ${summary}`);
      }
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
