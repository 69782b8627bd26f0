import assert from "node:assert/strict";
import { DevCa } from "../x509/mod.ts";
import {
  authorizePeer,
  InvalidSpiffeIdError,
  isSpiffeId,
  parseSpiffeId,
  spiffeIdFromCertificate,
  UnauthorizedPeerError,
  uriSans,
} from "./mod.ts";

Deno.test("parseSpiffeId accepts valid IDs and names the broken rule otherwise", () => {
  const id = parseSpiffeId("spiffe://example.org/workload/server");
  assert.equal(id.trustDomain, "example.org");
  assert.equal(id.path, "/workload/server");
  assert.equal(`${id}`, "spiffe://example.org/workload/server");
  assert.equal(parseSpiffeId("spiffe://example.org").path, "");
  const bad: [string, RegExp][] = [
    ["https://example.org/x", /scheme/],
    ["SPIFFE://example.org/x", /lower case/],
    ["spiffe:///x", /trust domain is missing/],
    ["spiffe://Example.org/x", /trust domain/],
    ["spiffe://example.org:8080/x", /port/],
    ["spiffe://example.org/a//b", /empty segment/],
    ["spiffe://example.org/a/../b", /'\.\.'/],
    ["spiffe://example.org/a?b", /path segments/],
    ["spiffe://example.org/", /empty segment/],
  ];
  for (const [input, reason] of bad) {
    assert.throws(
      () => parseSpiffeId(input),
      (e) => e instanceof InvalidSpiffeIdError && reason.test(e.message),
      input,
    );
    assert.equal(isSpiffeId(input), false);
  }
});

Deno.test("authorizePeer checks the URI SAN by exact ID, list or trust domain", async () => {
  const ca = await DevCa.create();
  const svid = await ca.issue({
    spiffeId: "spiffe://example.org/workload/client",
    dnsNames: ["client"],
    ttlMs: 60_000,
  });
  assert.deepEqual(uriSans(svid.certPem), ["spiffe://example.org/workload/client"]);
  assert.equal(spiffeIdFromCertificate(svid.certPem)?.path, "/workload/client");
  assert.equal(
    authorizePeer(svid.certPem, { id: "spiffe://example.org/workload/client" }).toString(),
    "spiffe://example.org/workload/client",
  );
  authorizePeer(svid.certPem, { trustDomain: "example.org" });
  authorizePeer(svid.certPem, {
    anyOf: ["spiffe://example.org/a", "spiffe://example.org/workload/client"],
  });
  assert.throws(
    () => authorizePeer(svid.certPem, { id: "spiffe://example.org/workload/server" }),
    UnauthorizedPeerError,
  );
  assert.throws(
    () => authorizePeer(svid.certPem, { trustDomain: "other.org" }),
    /trust domain other.org/,
  );
  assert.equal(spiffeIdFromCertificate(ca.certPem), undefined);
  assert.throws(() => authorizePeer(ca.certPem, { trustDomain: "example.org" }), /no SPIFFE ID/);
});
