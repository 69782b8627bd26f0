import assert from "node:assert/strict";
import {
  isSourceRef,
  labelSelectorText,
  parseClassRefs,
  readTrustBundles,
  refObjectName,
  SourceError,
  TRUST_BUNDLE_GROUP,
  type TrustBundleRef,
} from "./mod.ts";

const where = { namespace: "shop", name: "ca" };

function refs(...list: Record<string, unknown>[]) {
  return parseClassRefs({ spec: { refs: list } }, where);
}

function bundle(name: string, trustBundle: string) {
  return { metadata: { name }, spec: { trustBundle } };
}

Deno.test("ClusterTrustBundle refs: by name, by signer with or without labels, next to core refs", () => {
  const parsed = refs(
    { apiGroup: "", kind: "Secret", name: "ca" },
    { apiGroup: TRUST_BUNDLE_GROUP, kind: "ClusterTrustBundle", name: "example.com:ca:one" },
    { apiGroup: TRUST_BUNDLE_GROUP, kind: "ClusterTrustBundle", signerName: "example.com/ca" },
    {
      apiGroup: TRUST_BUNDLE_GROUP,
      kind: "ClusterTrustBundle",
      signerName: "example.com/ca",
      labelSelector: {
        matchLabels: { team: "a" },
        matchExpressions: [
          { key: "tier", operator: "In", values: ["y", "x"] },
          { key: "legacy", operator: "DoesNotExist" },
        ],
      },
    },
  );
  assert.deepEqual(parsed.map(isSourceRef), [true, false, false, false]);
  assert.deepEqual(parsed.slice(1), [
    {
      kind: "ClusterTrustBundle",
      name: "example.com:ca:one",
      signerName: undefined,
      labelSelector: undefined,
      index: 1,
    },
    {
      kind: "ClusterTrustBundle",
      name: undefined,
      signerName: "example.com/ca",
      labelSelector: undefined,
      index: 2,
    },
    {
      kind: "ClusterTrustBundle",
      name: undefined,
      signerName: "example.com/ca",
      labelSelector: "!legacy,team=a,tier in (x,y)",
      index: 3,
    },
  ]);
  assert.deepEqual(parsed.map(refObjectName), [
    "Secret shop/ca",
    "ClusterTrustBundle example.com:ca:one",
    "ClusterTrustBundles of signer example.com/ca",
    'ClusterTrustBundles of signer example.com/ca matching labels "!legacy,team=a,tier in (x,y)"',
  ]);
});

Deno.test("ClusterTrustBundle refs that cannot work name the field and the fix", () => {
  const ctb = { apiGroup: TRUST_BUNDLE_GROUP, kind: "ClusterTrustBundle" };
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { kind: "ClusterTrustBundle", name: "x" },
      /spec\.refs\[0\]: kind ClusterTrustBundle needs apiGroup "certificates\.k8s\.io", not ""/,
    ],
    [{ ...ctb }, /exactly one of name .* and signerName/],
    [{ ...ctb, name: "x", signerName: "example.com/s" }, /exactly one of name/],
    [{ ...ctb, name: "x", namespace: "spire" }, /cluster-scoped; remove namespace "spire"/],
    [{ ...ctb, name: "x", key: "ca.crt" }, /spec\.trustBundle; remove key "ca\.crt"/],
    [{ ...ctb, name: "x", labelSelector: {} }, /labelSelector applies to a signerName ref only/],
    [
      { ...ctb, signerName: "no-slash" },
      /signerName "no-slash" is not of the form <domain>\/<path>/,
    ],
    [{ ...ctb, name: "Bad_Name" }, /name "Bad_Name" is not a valid ClusterTrustBundle name/],
    [
      {
        ...ctb,
        signerName: "example.com/s",
        labelSelector: { matchExpressions: [{ key: "a", operator: "Like" }] },
      },
      /labelSelector\.matchExpressions\[0\]\.operator "Like" is not one of In, NotIn, Exists/,
    ],
    [
      {
        ...ctb,
        signerName: "example.com/s",
        labelSelector: { matchExpressions: [{ key: "a", operator: "In" }] },
      },
      /operator In needs at least one value/,
    ],
    [
      { ...ctb, signerName: "example.com/s", labelSelector: { matchLabels: { "bad key": "v" } } },
      /labelSelector\.matchLabels: "bad key" is not a valid label key/,
    ],
    [
      { apiGroup: "apps", kind: "Secret", name: "x" },
      /apiGroup "apps" is not supported .*"certificates\.k8s\.io" for ClusterTrustBundle/,
    ],
    [
      { kind: "Secret", name: "x", signerName: "example.com/s" },
      /signerName and labelSelector apply to ClusterTrustBundle refs only; remove them from this Secret ref/,
    ],
    [
      { kind: "Certificate", name: "x" },
      /kind "Certificate" is not supported \(Secret, ConfigMap, ClusterTrustBundle, Issuer or ClusterIssuer\)/,
    ],
  ];
  for (const [ref, message] of cases) {
    assert.throws(() => refs(ref), (error: unknown) => {
      assert.ok(error instanceof SourceError);
      assert.equal(error.reason, "InvalidRef");
      assert.match(error.message, /^CAProviderClass shop\/ca spec\.refs\[0\]/);
      assert.match(error.message, message);
      return true;
    }, JSON.stringify(ref));
  }
});

Deno.test("label selectors: an empty selector matches everything, terms are sorted", () => {
  assert.equal(labelSelectorText({}, "sel"), "");
  assert.equal(
    labelSelectorText({
      matchLabels: { b: "2", a: "1" },
      matchExpressions: [{ key: "c", operator: "NotIn", values: ["z"] }, {
        key: "d",
        operator: "Exists",
      }],
    }, "sel"),
    "a=1,b=2,c notin (z),d",
  );
  assert.throws(() => labelSelectorText("team=a", "sel"), /sel must be an object/);
});

Deno.test("the bundles a ref selects come in name order; none selected is SourceNotFound", () => {
  const [byName, bySigner] = refs(
    { apiGroup: TRUST_BUNDLE_GROUP, kind: "ClusterTrustBundle", name: "one" },
    {
      apiGroup: TRUST_BUNDLE_GROUP,
      kind: "ClusterTrustBundle",
      signerName: "example.com/ca",
      labelSelector: { matchLabels: { team: "a" } },
    },
  ) as TrustBundleRef[];
  assert.deepEqual(readTrustBundles(bySigner, [bundle("b", "B"), bundle("a", "A")], "class"), [
    { name: "ClusterTrustBundle a", text: "A" },
    { name: "ClusterTrustBundle b", text: "B" },
  ]);
  assert.throws(() => readTrustBundles(byName, [], "CAProviderClass shop/ca"), (e: unknown) => {
    assert.ok(e instanceof SourceError);
    assert.equal(e.reason, "SourceNotFound");
    assert.equal(e.message, "ClusterTrustBundle one (from CAProviderClass shop/ca) not found");
    return true;
  });
  assert.throws(() => readTrustBundles(bySigner, [], "CAProviderClass shop/ca"), (e: unknown) => {
    assert.ok(e instanceof SourceError);
    assert.equal(e.reason, "SourceNotFound");
    assert.match(
      e.message,
      /no ClusterTrustBundle has spec\.signerName example\.com\/ca and labels matching "team=a"; create one, or fix spec\.refs\[1\]/,
    );
    return true;
  });
  assert.throws(
    () => readTrustBundles(byName, [{ metadata: { name: "one" }, spec: {} }]),
    /ClusterTrustBundle one has no spec\.trustBundle/,
  );
});
