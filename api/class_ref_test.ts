import assert from "node:assert/strict";
import { parseClassList, parseClassRefs, readRefText, refKey, type SourceRef } from "./mod.ts";
import { KeyNotFoundError, SourceError } from "./mod.ts";
import {
  ANNOTATION_PREFIX,
  ANNOTATIONS,
  buildClass,
  CLASS_GROUP,
  CLASS_KIND,
  CLASS_PLURAL,
  CLASS_VERSION,
  CLASSES_ATTRIBUTE,
  DEFAULT_MOUNT_PATH,
  DEFAULT_OS_FAMILY,
  defaultMountPath,
  DRIVER_NAME,
  INJECT_LABEL,
  JKS_PASSWORD,
  OS_ATTRIBUTE,
  storeFiles,
  volumeAttributes,
} from "./mod.ts";

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

Deno.test("class refs: kubeops schema, keyless refs keep no key, own namespace by default", () => {
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
      index: 0,
    },
    { kind: "ConfigMap", namespace: "shop", name: "spire-bundle", key: "bundle.crt", index: 1 },
    { kind: "Secret", namespace: "shop", name: "mine", key: undefined, index: 2 },
  ]);
});

Deno.test("unusable class refs name the class and the ref index", () => {
  const where = { namespace: "shop", name: "c" };
  const cases: [unknown, RegExp][] = [
    [{}, /CAProviderClass shop\/c has no spec\.refs/],
    [{ spec: { refs: [] } }, /has no spec\.refs/],
    [
      { spec: { refs: [{ kind: "Certificate", name: "x", apiGroup: "cert-manager.io" }] } },
      /spec\.refs\[0\]: kind "Certificate" of apiGroup "cert-manager\.io" is not supported/,
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
      assert.equal(e.reason, "InvalidRef");
      assert.match(e.message, pattern);
      return true;
    });
  }
});

const b64 = (text: string) => btoa(text);
const secretRef: SourceRef = {
  kind: "Secret",
  namespace: "shop",
  name: "web-tls",
  key: undefined,
  index: 1,
};
const configMapRef: SourceRef = { ...secretRef, kind: "ConfigMap", name: "roots" };

Deno.test("keyless refs read ca.crt when the object has it, else tls.crt", () => {
  const both = { data: { "ca.crt": b64("CA"), "tls.crt": b64("LEAF"), "tls.key": b64("K") } };
  assert.deepEqual(refKey(secretRef, both), { key: "ca.crt", origin: "Default" });
  assert.deepEqual(readRefText(secretRef, both), { key: "ca.crt", origin: "Default", text: "CA" });
  const tls = { type: "kubernetes.io/tls", data: { "tls.crt": b64("CHAIN"), "tls.key": b64("K") } };
  assert.deepEqual(readRefText(secretRef, tls), {
    key: "tls.crt",
    origin: "Fallback",
    text: "CHAIN",
  });
  // ConfigMaps follow the same rule, in data or binaryData.
  assert.deepEqual(readRefText(configMapRef, { data: { "ca.crt": "PEM" } }), {
    key: "ca.crt",
    origin: "Default",
    text: "PEM",
  });
  assert.deepEqual(readRefText(configMapRef, { binaryData: { "tls.crt": b64("BIN") } }), {
    key: "tls.crt",
    origin: "Fallback",
    text: "BIN",
  });
  // A named key is read as named, with no fallback.
  const named: SourceRef = { ...secretRef, key: "bundle.pem" };
  assert.deepEqual(readRefText(named, { data: { "bundle.pem": b64("B") } }), {
    key: "bundle.pem",
    origin: "Ref",
    text: "B",
  });
});

Deno.test("a keyless ref whose object has neither key names the object and both keys", () => {
  const object = { data: { "tls.key": b64("SECRET KEY MATERIAL"), other: b64("x") } };
  assert.throws(
    () => readRefText(secretRef, object, "CAProviderClass shop/web"),
    (e: unknown) => {
      assert.ok(e instanceof KeyNotFoundError);
      assert.equal(e.reason, "KeyNotFound");
      assert.equal(e.object, "Secret shop/web-tls");
      assert.deepEqual(e.keys, ["ca.crt", "tls.crt"]);
      assert.deepEqual(e.present, ["other", "tls.key"]);
      assert.equal(
        e.message,
        'Secret shop/web-tls (from CAProviderClass shop/web) has neither key "ca.crt" nor ' +
          '"tls.crt", the keys a ref without key reads; keys present: other, tls.key. Add one of ' +
          "them, or set CAProviderClass shop/web spec.refs[1].key to the key holding the CA " +
          "certificates",
      );
      assert.doesNotMatch(e.message, /SECRET KEY MATERIAL|U0VDUkVU/);
      return true;
    },
  );
  const named: SourceRef = { ...configMapRef, key: "bundle.crt" };
  assert.throws(() => readRefText(named, { data: { "ca.crt": "x" } }), (e: unknown) => {
    assert.ok(e instanceof KeyNotFoundError);
    assert.deepEqual(e.keys, ["bundle.crt"]);
    assert.match(e.message, /^ConfigMap shop\/roots has no key "bundle.crt"; keys present: ca.crt/);
    assert.match(e.message, /Fix spec\.refs\[1\]\.key or add the key$/);
    return true;
  });
});

Deno.test("a ref to a missing object fails with SourceNotFound", () => {
  assert.throws(() => readRefText(secretRef, null, "CAProviderClass shop/web"), (e: unknown) => {
    assert.ok(e instanceof SourceError);
    assert.equal(e.reason, "SourceNotFound");
    assert.equal(e.message, "Secret shop/web-tls (from CAProviderClass shop/web) not found");
    return true;
  });
});

Deno.test("buildClass writes the shape parseClassRefs reads back, ref for ref", () => {
  const where = { namespace: "shop", name: "spire-ca" };
  const object = buildClass({
    ...where,
    labels: { "app.kubernetes.io/managed-by": "spire-cacerts" },
    refs: [
      { kind: "Secret", namespace: "spire", name: "spire-ca-bundle", key: "ca.crt" },
      { kind: "ConfigMap", name: "local-roots", key: "bundle.crt" },
      { kind: "Secret", name: "keyless" },
    ],
  });
  assert.deepEqual(object, {
    apiVersion: "cacerts.csi.cert-manager.io/v1alpha1",
    kind: "CAProviderClass",
    metadata: { ...where, labels: { "app.kubernetes.io/managed-by": "spire-cacerts" } },
    spec: {
      refs: [
        {
          apiGroup: "",
          kind: "Secret",
          namespace: "spire",
          name: "spire-ca-bundle",
          key: "ca.crt",
        },
        { apiGroup: "", kind: "ConfigMap", name: "local-roots", key: "bundle.crt" },
        { apiGroup: "", kind: "Secret", name: "keyless" },
      ],
    },
  });
  assert.equal(object.apiVersion, `${CLASS_GROUP}/${CLASS_VERSION}`);
  assert.equal(object.kind, CLASS_KIND);
  assert.deepEqual(parseClassRefs(object, where), [
    { kind: "Secret", namespace: "spire", name: "spire-ca-bundle", key: "ca.crt", index: 0 },
    { kind: "ConfigMap", namespace: "shop", name: "local-roots", key: "bundle.crt", index: 1 },
    { kind: "Secret", namespace: "shop", name: "keyless", key: undefined, index: 2 },
  ]);
});

Deno.test("the contract's names: driver, API, volume attributes, defaults, label, annotations", () => {
  assert.equal(DRIVER_NAME, "cacerts.csi.cert-manager.io");
  assert.equal(CLASS_PLURAL, "caproviderclasses");
  assert.deepEqual(volumeAttributes("rhel", "spire-ca"), {
    os: "rhel",
    caProviderClasses: "spire-ca",
  });
  assert.deepEqual([OS_ATTRIBUTE, CLASSES_ATTRIBUTE], ["os", "caProviderClasses"]);
  assert.equal(DEFAULT_OS_FAMILY, "debian");
  assert.equal(DEFAULT_MOUNT_PATH, "/etc/ssl/certs");
  assert.equal(defaultMountPath("fedora"), "/etc/pki/ca-trust/extracted");
  assert.equal(INJECT_LABEL, "spiffe.io/spire-managed-identity");
  assert.equal(ANNOTATION_PREFIX, "cacerts.spiffe.io/");
  assert.deepEqual(Object.values(ANNOTATIONS), [
    "inject",
    "os",
    "containers",
    "mount-path",
    "env",
    "trust-restarted-at",
  ]);
  assert.equal(JKS_PASSWORD, "changeit");
  assert.equal(storeFiles("sles").java, "java-cacerts");
});
