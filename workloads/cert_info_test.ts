import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { fileURLToPath } from "node:url";
import { DevCa } from "../x509/mod.ts";
import {
  certificateInfo,
  certificateInfoLines,
  goDuration,
  goDurationString,
  goLogPrefix,
  goSubject,
  rfc3339,
} from "./cert_info.ts";
import { x509 } from "../x509/mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A self-signed certificate whose subject is exactly `name` (RDNs in this DER order). */
async function certificateNamed(name: Array<Record<string, string[]>>): Promise<Uint8Array> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, false, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name,
    notBefore: new Date("2026-01-01T00:00:00Z"),
    notAfter: new Date("2026-01-02T00:00:00Z"),
    keys,
    signingAlgorithm: alg,
  });
  return new Uint8Array(cert.rawData);
}

Deno.test("the report is five lines: header, Subject, Not Before, Not After, Time until expiration", async () => {
  const ca = await DevCa.create();
  const svid = await ca.issue({
    spiffeId: "spiffe://example.org/workload/server",
    dnsNames: ["server-service"],
    ttlMs: 10_000,
  });
  const der = new Uint8Array(new X509Certificate(svid.certPem).raw);
  const info = certificateInfo(der);
  assert.equal(info.subject, "CN=server-service, O=SPIRE, C=US");
  // SPIRE back-dates NotBefore by 10 s: a 10 s TTL spans 20 s.
  assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), 20_000);
  assert.deepEqual(certificateInfoLines(info, new Date(info.notAfter.getTime() - 5_000)), [
    "Certificate Information:",
    "  Subject: CN=server-service, O=SPIRE, C=US",
    `  Not Before: ${rfc3339(info.notBefore)}`,
    `  Not After: ${rfc3339(svid.notAfter)}`,
    "  Time until expiration: 5s",
  ]);
});

Deno.test("the subject is CN, then every O, OU, C, L and ST in certificate order, and nothing else", async () => {
  const der = await certificateNamed([
    { ST: ["Oregon"] },
    { L: ["Portland"] },
    { C: ["US"] },
    { OU: ["Ops"] },
    { O: ["Acme"] },
    { "2.5.4.5": ["SN-1234"] }, // serialNumber
    { E: ["ops@example.org"] }, // emailAddress
    { DC: ["example"] },
    { O: ["Second Org"], OU: ["Dev"] }, // one multi-valued RDN
    { CN: ["server-service"] },
  ]);
  assert.equal(
    goSubject(der),
    "CN=server-service, O=Acme, O=Second Org, OU=Ops, OU=Dev, C=US, L=Portland, ST=Oregon",
  );
});

Deno.test("the subject keeps the last CN as Go's pkix.Name does and prints values unescaped", async () => {
  const der = await certificateNamed([
    { CN: ["first"] },
    { O: ["Acme, Inc."] },
    { CN: ["last"] },
  ]);
  assert.equal(goSubject(der), "CN=last, O=Acme, Inc.");
  assert.equal(goSubject(await certificateNamed([{ O: ["SPIRE"] }])), "CN=, O=SPIRE");
});

Deno.test("Time until expiration is Go's Duration.Round(time.Second).String()", () => {
  // Each pair was printed by Go 1.26 (time.Duration(ms * time.Millisecond).Round(time.Second)).
  const cases: Array<[number, string]> = [
    [0, "0s"],
    [499, "0s"],
    [500, "1s"],
    [-499, "0s"],
    [-500, "-1s"],
    [1_500, "2s"],
    [-1_500, "-2s"],
    [-2_500, "-3s"],
    [-3_000, "-3s"],
    [4_600, "5s"],
    [9_000, "9s"],
    [65_000, "1m5s"],
    [3_599_000, "59m59s"],
    [3_599_500, "1h0m0s"],
    [3_600_000, "1h0m0s"],
    [7_200_000, "2h0m0s"],
    [360_000_000, "100h0m0s"],
  ];
  for (const [ms, text] of cases) assert.equal(goDuration(ms), text, `${ms} ms`);
  // time.Until saturates at Go's int64 nanosecond range (a NotAfter of 9999-12-31, year 1).
  const now = Date.now();
  assert.equal(goDuration(Date.UTC(9999, 11, 31, 23, 59, 59) - now), "2562047h47m16.854775807s");
  assert.equal(goDuration(Date.parse("0001-01-01T00:00:00Z") - now), "-2562047h47m16.854775808s");
});

Deno.test("Duration.String() below a second and with fractions is Go's", () => {
  assert.equal(goDurationString(0n), "0s");
  assert.equal(goDurationString(5n), "5ns");
  assert.equal(goDurationString(1_500n), "1.5µs");
  assert.equal(goDurationString(1_200_000n), "1.2ms");
  assert.equal(goDurationString(-1_200_000n), "-1.2ms");
  assert.equal(goDurationString(1_500_000_000n), "1.5s");
  assert.equal(goDurationString(61_000_000_000n), "1m1s");
  assert.equal(goDurationString(3_723_000_000_000n), "1h2m3s");
});

Deno.test("times print as RFC 3339 UTC without milliseconds", () => {
  assert.equal(rfc3339(new Date("2025-01-23T16:42:55.789Z")), "2025-01-23T16:42:55Z");
});

Deno.test("the log prefix is Go's LstdFlags: YYYY/MM/DD HH:MM:SS and a space, in local time", () => {
  const date = new Date(2026, 11, 1, 9, 5, 3, 999); // local time
  assert.equal(goLogPrefix(date), "2026/12/01 09:05:03 ");
  const now = new Date();
  const prefix = goLogPrefix(now);
  assert.match(prefix, /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d $/);
  assert.equal(Number(prefix.slice(11, 13)), now.getHours());
  assert.equal(Number(prefix.slice(8, 10)), now.getDate());
});

Deno.test("the log prefix follows TZ: Asia/Kathmandu and America/Los_Angeles", async () => {
  const script = `
    import { goLogPrefix } from ${JSON.stringify(new URL("./cert_info.ts", import.meta.url).href)};
    console.log(JSON.stringify([
      goLogPrefix(new Date("2026-12-01T03:20:03Z")),
      goLogPrefix(new Date("2026-11-30T20:00:00Z")),
    ]));`;
  const run = async (tz: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      cwd: ROOT,
      env: { TZ: tz, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    return JSON.parse(new TextDecoder().decode(out.stdout));
  };
  assert.deepEqual(await run("Asia/Kathmandu"), ["2026/12/01 09:05:03 ", "2026/12/01 01:45:00 "]);
  assert.deepEqual(await run("America/Los_Angeles"), [
    "2026/11/30 19:20:03 ",
    "2026/11/30 12:00:00 ",
  ]);
});
