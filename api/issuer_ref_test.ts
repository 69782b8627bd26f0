import assert from "node:assert/strict";
import {
  buildClass,
  DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
  isIssuerRef,
  isSourceRef,
  type IssuerRef,
  issuerSecret,
  issuerSecretRef,
  issuerType,
  isTrustBundleRef,
  KeyNotFoundError,
  parseClassRefs,
  readRefText,
  refObjectName,
  SourceError,
} from "./mod.ts";

const where = { namespace: "shop", name: "ca" };
const CM = "cert-manager.io";

function refs(...list: Record<string, unknown>[]) {
  return parseClassRefs({ spec: { refs: list } }, where);
}

function refusal(...list: Record<string, unknown>[]): SourceError {
  try {
    refs(...list);
  } catch (error) {
    assert.ok(error instanceof SourceError, String(error));
    assert.equal(error.reason, "InvalidRef");
    return error;
  }
  throw new Error("parsed");
}

function caIssuer(secretName: string) {
  return { apiVersion: `${CM}/v1`, kind: "Issuer", spec: { ca: { secretName } } };
}

Deno.test("Issuer and ClusterIssuer refs parse next to core and bundle refs", () => {
  const parsed = refs(
    { kind: "Secret", name: "ca" },
    { apiGroup: CM, kind: "Issuer", name: "team-ca" },
    { apiGroup: CM, kind: "Issuer", namespace: "certs", name: "shared" },
    { apiGroup: CM, kind: "ClusterIssuer", name: "root" },
    { apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle", name: "b" },
  );
  assert.deepEqual(parsed.map(isSourceRef), [true, false, false, false, false]);
  assert.deepEqual(parsed.map(isIssuerRef), [false, true, true, true, false]);
  assert.deepEqual(parsed.map(isTrustBundleRef), [false, false, false, false, true]);
  assert.deepEqual(parsed.slice(1, 4), [
    // An Issuer without namespace is the class's.
    { kind: "Issuer", namespace: "shop", name: "team-ca", index: 1 },
    { kind: "Issuer", namespace: "certs", name: "shared", index: 2 },
    { kind: "ClusterIssuer", namespace: "", name: "root", index: 3 },
  ]);
  assert.deepEqual(parsed.slice(1, 4).map(refObjectName), [
    "Issuer shop/team-ca",
    "Issuer certs/shared",
    "ClusterIssuer root",
  ]);
});

Deno.test("issuer refs: a wrong apiGroup, a missing name and misplaced fields name the fix", () => {
  assert.match(
    refusal({ kind: "Issuer", name: "x" }).message,
    /spec\.refs\[0\]: kind Issuer needs apiGroup "cert-manager\.io", not ""/,
  );
  assert.match(
    refusal({ apiGroup: "certificates.k8s.io", kind: "ClusterIssuer", name: "x" }).message,
    /kind ClusterIssuer needs apiGroup "cert-manager\.io", not "certificates\.k8s\.io"/,
  );
  assert.match(
    refusal({ apiGroup: CM, kind: "Secret", name: "x" }).message,
    /apiGroup "cert-manager\.io" is not supported \(use "" for Secret and ConfigMap/,
  );
  assert.match(
    refusal({ apiGroup: CM, kind: "Certificate", name: "x" }).message,
    /kind "Certificate" of apiGroup "cert-manager\.io" is not supported: only Issuer and ClusterIssuer are read/,
  );
  assert.match(
    refusal({ kind: "Secret", name: "ok" }, { apiGroup: CM, kind: "Issuer" }).message,
    /CAProviderClass shop\/ca spec\.refs\[1\]: name "" is missing or invalid; set it to the Issuer's name/,
  );
  assert.match(
    refusal({ apiGroup: CM, kind: "Issuer", name: "Not_Valid" }).message,
    /name "Not_Valid" is missing or invalid/,
  );
  assert.match(
    refusal({ apiGroup: CM, kind: "Issuer", name: "x", namespace: "Bad_NS" }).message,
    /namespace "Bad_NS" is invalid/,
  );
  assert.match(
    refusal({ apiGroup: CM, kind: "ClusterIssuer", name: "x", namespace: "certs" }).message,
    /a ClusterIssuer is cluster-scoped; remove namespace "certs"/,
  );
  assert.match(
    refusal({ apiGroup: CM, kind: "Issuer", name: "x", key: "tls.crt" }).message,
    /an Issuer ref reads its CA Secret's ca\.crt, else tls\.crt; remove key "tls\.crt"/,
  );
  assert.match(
    refusal({ apiGroup: CM, kind: "Issuer", name: "x", signerName: "example.com/s" }).message,
    /signerName and labelSelector apply to ClusterTrustBundle refs only/,
  );
});

Deno.test("a CA issuer stands for its Secret: the Issuer's namespace, or the cluster resource namespace", () => {
  const [issuer, cluster] = refs(
    { apiGroup: CM, kind: "Issuer", name: "team-ca" },
    { apiGroup: CM, kind: "ClusterIssuer", name: "root" },
  ) as IssuerRef[];
  assert.deepEqual(issuerSecret(issuer, caIssuer("team-ca-key"), "cert-manager"), {
    namespace: "shop",
    name: "team-ca-key",
  });
  assert.deepEqual(issuerSecret(cluster, caIssuer("root-ca"), "certs-system"), {
    namespace: "certs-system",
    name: "root-ca",
  });
  assert.equal(DEFAULT_CLUSTER_RESOURCE_NAMESPACE, "cert-manager");
  // Read as a keyless Secret ref: ca.crt, else tls.crt.
  const secretRef = issuerSecretRef(cluster, caIssuer("root-ca"), "cert-manager", "class");
  assert.deepEqual(secretRef, {
    kind: "Secret",
    namespace: "cert-manager",
    name: "root-ca",
    key: undefined,
    index: 1,
    via: "ClusterIssuer root",
  });
  const both = { data: { "ca.crt": btoa("CA"), "tls.crt": btoa("TLS") } };
  assert.deepEqual(readRefText(secretRef, both), { key: "ca.crt", origin: "Default", text: "CA" });
  const tlsOnly = { data: { "tls.crt": btoa("TLS"), "tls.key": btoa("K") } };
  assert.deepEqual(readRefText(secretRef, tlsOnly), {
    key: "tls.crt",
    origin: "Fallback",
    text: "TLS",
  });
  // Neither key: the fix is in the Secret or the issuer, not a ref key.
  assert.throws(
    () => readRefText(secretRef, { data: { "tls.key": btoa("K") } }, "CAProviderClass shop/ca"),
    (e: unknown) =>
      e instanceof KeyNotFoundError &&
      e.message ===
        'Secret cert-manager/root-ca (from CAProviderClass shop/ca) has neither key "ca.crt" ' +
          'nor "tls.crt", the keys the CA Secret of ClusterIssuer root is read by; keys ' +
          "present: tls.key. Add the CA certificate as one of them, or point ClusterIssuer " +
          "root's spec.ca.secretName at the Secret that holds it",
  );
});

Deno.test("a missing issuer is SourceNotFound; a non-CA issuer is refused naming its type", () => {
  const [issuer, cluster] = refs(
    { apiGroup: CM, kind: "Issuer", name: "team-ca" },
    { apiGroup: CM, kind: "ClusterIssuer", name: "letsencrypt" },
  ) as IssuerRef[];
  const refused = (ref: IssuerRef, object: Record<string, unknown> | null) => {
    try {
      issuerSecret(ref, object, "cert-manager", "CAProviderClass shop/ca");
    } catch (error) {
      assert.ok(error instanceof SourceError, String(error));
      return error;
    }
    throw new Error("accepted");
  };
  const missing = refused(issuer, null);
  assert.equal(missing.reason, "SourceNotFound");
  assert.match(
    missing.message,
    /^Issuer shop\/team-ca \(from CAProviderClass shop\/ca\) not found/,
  );

  const acme = refused(cluster, {
    spec: {
      acme: { server: "https://acme.example/directory", privateKeySecretRef: { name: "k" } },
    },
  });
  assert.equal(acme.reason, "InvalidRef");
  assert.match(
    acme.message,
    /^ClusterIssuer letsencrypt \(from CAProviderClass shop\/ca\) is an acme issuer; only CA issuers \(spec\.ca\.secretName\) can be read/,
  );
  const selfSigned = refused(issuer, { spec: { selfSigned: {} } });
  assert.match(selfSigned.message, /is a selfSigned issuer; only CA issuers/);
  assert.match(selfSigned.message, /a selfSigned issuer has no CA Secret/);
  for (const type of ["vault", "venafi"]) {
    const error = refused(issuer, { spec: { [type]: {} } });
    assert.match(error.message, new RegExp(`is a ${type} issuer; only CA issuers`));
  }
  assert.match(refused(issuer, { spec: { ca: {} } }).message, /its spec\.ca has no secretName/);
  assert.match(refused(issuer, {}).message, /is an unknown issuer/);
  assert.match(
    refused(issuer, caIssuer("Bad_Name")).message,
    /spec\.ca\.secretName "Bad_Name" is not a valid Secret name/,
  );
  assert.equal(issuerType({ spec: { ca: { secretName: "x" } } }), "ca");
});

Deno.test("buildClass writes issuer refs with apiGroup cert-manager.io, and they parse back", () => {
  const object = buildClass({
    ...where,
    refs: [
      { kind: "Issuer", name: "team-ca" },
      { kind: "ClusterIssuer", name: "root" },
      { kind: "Secret", name: "s", key: "ca.crt" },
    ],
  });
  assert.deepEqual(object.spec.refs, [
    { apiGroup: CM, kind: "Issuer", name: "team-ca" },
    { apiGroup: CM, kind: "ClusterIssuer", name: "root" },
    { apiGroup: "", kind: "Secret", name: "s", key: "ca.crt" },
  ]);
  assert.deepEqual(parseClassRefs(object, where).map(refObjectName), [
    "Issuer shop/team-ca",
    "ClusterIssuer root",
    "Secret shop/s",
  ]);
});
