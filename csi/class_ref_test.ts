import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { parseClassList, parseClassRefs } from "./class_ref.ts";
import { SourceError } from "./errors.ts";

Deno.test("class lists split on commas and whitespace, default to the pod namespace, dedupe", () => {
  assert.deepEqual(parseClassList("a,b  other/c\n a", "ns"), [
    { namespace: "ns", name: "a" },
    { namespace: "ns", name: "b" },
    { namespace: "other", name: "c" },
  ]);
  assert.throws(() => parseClassList(" , ", "ns"), /no class named/);
  assert.throws(() => parseClassList("UPPER/x", "ns"), /"UPPER" is not a valid namespace/);
  assert.throws(() => parseClassList("a//b", "ns"), /neither/);
});

Deno.test("class refs: kubeops schema, default key ca.crt, own namespace by default", () => {
  const refs = parseClassRefs({
    spec: {
      refs: [
        {
          apiGroup: "",
          kind: "Secret",
          name: "spire-ca-bundle",
          namespace: "spire",
          key: "ca.crt",
        },
        { kind: "ConfigMap", name: "spire-bundle", key: "bundle.crt" },
        { kind: "Secret", name: "mine" },
      ],
    },
  }, { namespace: "shop", name: "spire-ca" });
  assert.deepEqual(refs, [
    {
      kind: "Secret",
      namespace: "spire",
      name: "spire-ca-bundle",
      key: "ca.crt",
      defaultedKey: false,
    },
    {
      kind: "ConfigMap",
      namespace: "shop",
      name: "spire-bundle",
      key: "bundle.crt",
      defaultedKey: false,
    },
    { kind: "Secret", namespace: "shop", name: "mine", key: "ca.crt", defaultedKey: true },
  ]);
});

Deno.test("unusable class refs name the class and the ref index", () => {
  const where = { namespace: "shop", name: "c" };
  const cases: [unknown, RegExp][] = [
    [{}, /CAProviderClass shop\/c has no spec\.refs/],
    [{ spec: { refs: [] } }, /has no spec\.refs/],
    [
      { spec: { refs: [{ kind: "Issuer", name: "x", apiGroup: "cert-manager.io" }] } },
      /spec\.refs\[0\]: apiGroup "cert-manager\.io" is not supported/,
    ],
    [
      { spec: { refs: [{ kind: "Secret", name: "ok" }, { kind: "Pod", name: "x" }] } },
      /spec\.refs\[1\]: kind "Pod" is not supported/,
    ],
    [{ spec: { refs: [{ kind: "Secret" }] } }, /spec\.refs\[0\]: name "" is missing or invalid/],
  ];
  for (const [object, pattern] of cases) {
    assert.throws(() => parseClassRefs(object, where), (e: unknown) => {
      assert.ok(e instanceof SourceError);
      assert.equal(e.code, status.FAILED_PRECONDITION);
      assert.match(e.message, pattern);
      return true;
    });
  }
});
