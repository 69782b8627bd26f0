import assert from "node:assert/strict";
import {
  bundleObjectName,
  clusterTrustBundle,
  MAX_TRUST_BUNDLE_BYTES,
  signerNameFor,
  TrustBundleTooLargeError,
  TrustDomainError,
} from "./cluster_trust_bundle.ts";

Deno.test("signer and object name of a trust domain follow the API's naming rule", () => {
  const signer = signerNameFor("example.org");
  assert.equal(signer, "cacerts.csi.cert-manager.io/spire-example.org");
  // The API requires the signer with "/" as ":" and a ":" before the suffix.
  assert.equal(bundleObjectName(signer), "cacerts.csi.cert-manager.io:spire-example.org:bundle");
  assert.equal(
    signerNameFor("prod-1.corp.example"),
    "cacerts.csi.cert-manager.io/spire-prod-1.corp.example",
  );
});

Deno.test("a trust domain a signer name cannot hold is refused naming the flag and the fix", () => {
  for (
    const bad of ["", "under_score.org", "Upper.org", "a..b", "-lead.org", `${"a".repeat(64)}.org`]
  ) {
    assert.throws(() => signerNameFor(bad), (error: unknown) => {
      assert.ok(error instanceof TrustDomainError);
      assert.equal(error.trustDomain, bad);
      assert.match(
        error.message,
        /^trust domain ".*" .*; set --trust-domain to SPIRE's trust_domain/,
      );
      assert.match(error.message, /--cluster-trust-bundle=false/);
      return true;
    }, bad);
  }
});

Deno.test("the object carries signer, PEM and labels; above 1 MiB it is refused", () => {
  const signer = signerNameFor("example.org");
  const object = clusterTrustBundle(signer, "PEM", { a: "b" });
  assert.deepEqual(object, {
    apiVersion: "certificates.k8s.io/v1",
    kind: "ClusterTrustBundle",
    metadata: { name: "cacerts.csi.cert-manager.io:spire-example.org:bundle", labels: { a: "b" } },
    spec: { signerName: signer, trustBundle: "PEM" },
  });
  assert.doesNotThrow(() => clusterTrustBundle(signer, "x".repeat(MAX_TRUST_BUNDLE_BYTES), {}));
  assert.throws(
    () => clusterTrustBundle(signer, "x".repeat(MAX_TRUST_BUNDLE_BYTES + 1), {}),
    (error: unknown) => {
      assert.ok(error instanceof TrustBundleTooLargeError);
      assert.equal(error.bytes, MAX_TRUST_BUNDLE_BYTES + 1);
      assert.match(
        error.message,
        /^ClusterTrustBundle cacerts\.csi\.cert-manager\.io:spire-example\.org:bundle spec\.trustBundle would be 1048577 bytes/,
      );
      return true;
    },
  );
});
