import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { DevCa } from "./dev_ca.ts";
import { certificateInfo, formatCertificateInfo, goDuration, rfc3339 } from "./cert_info.ts";

Deno.test("the report has the exact lines of the original client", async () => {
  const ca = await DevCa.create();
  const svid = await ca.issue({
    spiffeId: "spiffe://example.org/workload/server",
    dnsNames: ["server-service"],
    ttlMs: 10_000,
  });
  const der = new Uint8Array(new X509Certificate(svid.certPem).raw);
  const info = certificateInfo(der);
  assert.equal(info.subject, "CN=server-service, O=SPIRE, C=US");
  const text = formatCertificateInfo(info, new Date(info.notAfter.getTime() - 5_000));
  const lines = text.split("\n");
  assert.deepEqual(lines.map((l) => l.replace(/: .*/, ":")), [
    "Certificate Information:",
    "  Subject:",
    "  Not Before:",
    "  Not After:",
    "  Time until expiration:",
  ]);
  assert.equal(lines[3], `  Not After: ${rfc3339(svid.notAfter)}`);
  assert.equal(lines[4], "  Time until expiration: 5s");
  // SPIRE back-dates NotBefore by 10 s: a 10 s TTL spans 20 s.
  assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), 20_000);
});

Deno.test("times print as RFC 3339 UTC without milliseconds and Go durations", () => {
  assert.equal(rfc3339(new Date("2025-01-23T16:42:55.789Z")), "2025-01-23T16:42:55Z");
  assert.equal(goDuration(0), "0s");
  assert.equal(goDuration(4_600), "5s");
  assert.equal(goDuration(65_000), "1m5s");
  assert.equal(goDuration(7_200_000), "2h0m0s");
  assert.equal(goDuration(-3_000), "-3s");
});
