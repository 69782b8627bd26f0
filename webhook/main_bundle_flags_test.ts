import assert from "node:assert/strict";
import { parseFlags, UsageError } from "./main.ts";

Deno.test("flags: both bundle targets are on by default, for the manifests' trust domain", () => {
  const flags = parseFlags([]);
  assert.equal(flags.bundleSecret, true);
  assert.equal(flags.clusterTrustBundle, true);
  assert.equal(flags.trustDomain, "example.org");
});

Deno.test("flags: each bundle target switches off on its own", () => {
  const noSecret = parseFlags(["--bundle-secret=false"]);
  assert.deepEqual([noSecret.bundleSecret, noSecret.clusterTrustBundle], [false, true]);
  const noBundle = parseFlags(["--cluster-trust-bundle=false", "--trust-domain=prod.corp"]);
  assert.deepEqual([noBundle.bundleSecret, noBundle.clusterTrustBundle], [true, false]);
  assert.equal(noBundle.trustDomain, "prod.corp");
});

Deno.test("flags: a trust domain that cannot name a signer is refused with the fix", () => {
  assert.throws(
    () => parseFlags(["--trust-domain=my_domain.org"]),
    (error: unknown) =>
      error instanceof UsageError &&
      /^--trust-domain: trust domain "my_domain\.org" cannot be part of a ClusterTrustBundle signer name: "my_domain" is not a DNS label.*--cluster-trust-bundle=false$/
        .test(error.message),
  );
});
