/**
 * The Workload API client against a real SPIRE agent: it waits through "no identity yet", gets
 * the SVID once an entry exists, and follows its rotation (10 s TTL).
 */
import assert from "node:assert/strict";
import { WorkloadApiX509Source } from "../spire/mod.ts";
import { needsTools, startSpire } from "./harness/mod.ts";
import { setTimeout as delay } from "node:timers/promises";

Deno.test({
  name: "Workload API FetchX509SVID: waits for an entry, then streams verified rotating SVIDs",
  ...needsTools(["spire-server", "spire-agent"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const spire = await startSpire({ trustDomain: "example.org" });
    const errors: string[] = [];
    const source = new WorkloadApiX509Source(spire.agentSocketPath, {
      hint: "server",
      retryMs: 200,
      onError: (e) => errors.push(e.message),
    });
    try {
      await delay(1_500);
      assert.equal(source.current(), undefined, "no entry yet: no SVID");
      assert.ok(
        errors.some((e) => /PermissionDenied|no identity|7 PERMISSION_DENIED/i.test(e)),
        errors.join("\n"),
      );
      await spire.createEntry({
        spiffeId: "/workload/server",
        dnsNames: ["server-service"],
        x509SvidTtlSeconds: 10,
        hint: "server",
      });
      const first = await source.ready();
      assert.equal(first.spiffeId?.toString(), "spiffe://example.org/workload/server");
      assert.match(first.leaf.subject, /CN=server-service/);
      assert.equal(first.bundle.length, 1);
      const next = await new Promise<typeof first>((resolve) => {
        const off = source.onUpdate((set) => {
          off();
          resolve(set);
        });
      });
      assert.ok(next.notAfter > first.notAfter, "a rotated SVID arrives on the stream");
      assert.notEqual(next.id, first.id);
    } finally {
      source.close();
      await spire.stop();
    }
  },
});
