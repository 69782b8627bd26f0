import assert from "node:assert/strict";
import { KeyNotFoundError, SourceError } from "../api/mod.ts";
import { objectKey, type WatchedObject } from "../kube/mod.ts";
import { SourceResolver } from "./resolver.ts";
import { FakeObjects, secretClass } from "./_test_utils.ts";

const pod = { namespace: "shop", name: "web", uid: "" };

function setup(allowedRefNamespaces: string[] = []) {
  const objects = new FakeObjects();
  return { objects, resolver: new SourceResolver({ objects, allowedRefNamespaces }) };
}

async function reason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SourceError, String(error));
    return error.reason;
  }
  throw new Error("resolved");
}

Deno.test("sources come in class and ref order, named by object and key", async () => {
  const { objects, resolver } = setup();
  objects.put("CAProviderClass", "shop", "a", secretClass("s1", "s2"));
  objects.put("CAProviderClass", "shop", "b", {
    spec: { refs: [{ kind: "ConfigMap", name: "roots", key: "extra.pem" }] },
  });
  objects.put("Secret", "shop", "s1", { data: { "ca.crt": btoa("one") } });
  objects.put("Secret", "shop", "s2", { data: { "tls.crt": btoa("two") } });
  objects.put("ConfigMap", "shop", "roots", { data: { "extra.pem": "three" } });
  const deps: WatchedObject[] = [];
  const sources = await resolver.resolve({
    pod,
    classes: [{ namespace: "shop", name: "a" }, { namespace: "shop", name: "b" }],
  }, deps);
  assert.deepEqual(sources.map((s) => s.text), ["one", "two", "three"]);
  assert.match(sources[0].name, /Secret shop\/s1 key ca\.crt/);
  assert.deepEqual(deps.map((d) => `${d.kind}/${d.name}`), [
    "CAProviderClass/a",
    "Secret/s1",
    "Secret/s2",
    "CAProviderClass/b",
    "ConfigMap/roots",
  ]);
});

Deno.test("a class in another namespace is NotAllowed unless listed, and read when it is", async () => {
  const classes = [{ namespace: "spire", name: "ca" }];
  assert.equal(await reason(setup().resolver.resolve({ pod, classes }, [])), "NotAllowed");
  const { objects, resolver } = setup(["spire"]);
  objects.put("CAProviderClass", "spire", "ca", secretClass("ca"));
  objects.put("Secret", "spire", "ca", { data: { "ca.crt": btoa("pem") } });
  assert.equal((await resolver.resolve({ pod, classes }, [])).length, 1);
  assert.equal(await reason(setup(["*"]).resolver.resolve({ pod, classes }, [])), "ClassNotFound");
});

Deno.test("a ref into a namespace not listed is NotAllowed, after the class was read", async () => {
  const { objects, resolver } = setup();
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ kind: "Secret", name: "ca", namespace: "spire" }] },
  });
  const deps: WatchedObject[] = [];
  const classes = [{ namespace: "shop", name: "a" }];
  assert.equal(await reason(resolver.resolve({ pod, classes }, deps)), "NotAllowed");
  assert.equal(deps.length, 1, "the class is followed, so a fix to it is picked up");
});

Deno.test("a missing class, a missing source and a missing key have their own reasons", async () => {
  const { objects, resolver } = setup();
  const classes = [{ namespace: "shop", name: "a" }];
  assert.equal(await reason(resolver.resolve({ pod, classes }, [])), "ClassNotFound");
  objects.put("CAProviderClass", "shop", "a", secretClass("ca"));
  assert.equal(await reason(resolver.resolve({ pod, classes }, [])), "SourceNotFound");
  objects.put("Secret", "shop", "ca", { data: { other: btoa("x") } });
  await assert.rejects(resolver.resolve({ pod, classes }, []), KeyNotFoundError);
});

Deno.test("a source whose list failed is Forbidden for a 403 and SourceUnreadable otherwise", async () => {
  const { objects, resolver } = setup();
  const classes = [{ namespace: "shop", name: "a" }];
  objects.put("CAProviderClass", "shop", "a", secretClass("ca"));
  objects.fail("Secret", "shop", "ca", { code: 403 });
  assert.equal(await reason(resolver.resolve({ pod, classes }, [])), "Forbidden");
  objects.fail("Secret", "shop", "ca", new Error("connect ECONNREFUSED"));
  assert.equal(await reason(resolver.resolve({ pod, classes }, [])), "SourceUnreadable");
});

/** {@link FakeObjects} that also serves selections (lists by selector), keyed by objectKey. */
class SelectingObjects extends FakeObjects {
  readonly lists = new Map<string, Record<string, unknown>>();

  override get(o: WatchedObject): Record<string, unknown> | null | undefined {
    const state = super.get(o);
    if (!o.selector || state === undefined) return state;
    return this.lists.get(objectKey(o)) ?? null;
  }
}

const CTB = { apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle" };

function bundle(name: string, pem: string) {
  return { metadata: { name, resourceVersion: "1" }, spec: { trustBundle: pem } };
}

Deno.test("ClusterTrustBundle refs: by name, or every bundle of a signer matching the labels", async () => {
  const objects = new SelectingObjects();
  const resolver = new SourceResolver({ objects, allowedRefNamespaces: [] });
  objects.put("CAProviderClass", "shop", "a", {
    spec: {
      refs: [
        { ...CTB, name: "root" },
        { ...CTB, signerName: "example.com/ca", labelSelector: { matchLabels: { team: "a" } } },
        { kind: "Secret", name: "s1" },
      ],
    },
  });
  objects.put("ClusterTrustBundle", "", "root", bundle("root", "R"));
  objects.put("Secret", "shop", "s1", { data: { "ca.crt": btoa("S") } });
  const selection: WatchedObject = {
    kind: "ClusterTrustBundle",
    namespace: "",
    name: "",
    selector: { fieldSelector: "spec.signerName=example.com/ca", labelSelector: "team=a" },
  };
  objects.lists.set(objectKey(selection), {
    items: [bundle("example.com:ca:2", "B2"), bundle("example.com:ca:1", "B1")],
  });
  const deps: WatchedObject[] = [];
  const sources = await resolver.resolve(
    { pod, classes: [{ namespace: "shop", name: "a" }] },
    deps,
  );
  assert.deepEqual(sources.map((s) => [s.name, s.text]), [
    ["ClusterTrustBundle root", "R"],
    ["ClusterTrustBundle example.com:ca:1", "B1"],
    ["ClusterTrustBundle example.com:ca:2", "B2"],
    ["Secret shop/s1 key ca.crt", "S"],
  ]);
  assert.deepEqual(deps.map(objectKey), [
    "CAProviderClass/shop/a",
    "ClusterTrustBundle//root",
    objectKey(selection),
    "Secret/shop/s1",
  ]);
  assert.match(objectKey(selection), /fieldSelector=spec\.signerName%3Dexample\.com%2Fca/);

  objects.lists.set(objectKey(selection), { items: [] });
  await assert.rejects(
    resolver.resolve({ pod, classes: [{ namespace: "shop", name: "a" }] }, []),
    (e: unknown) =>
      e instanceof SourceError && e.reason === "SourceNotFound" &&
      /no ClusterTrustBundle has spec\.signerName example\.com\/ca and labels matching "team=a"/
        .test(e.message),
  );
});

Deno.test("a signer ref without labelSelector lists by signer only", async () => {
  const objects = new SelectingObjects();
  const resolver = new SourceResolver({ objects, allowedRefNamespaces: [] });
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ ...CTB, signerName: "example.com/ca" }] },
  });
  const deps: WatchedObject[] = [];
  await resolver.resolve({ pod, classes: [{ namespace: "shop", name: "a" }] }, deps).catch(
    () => {},
  );
  assert.deepEqual(deps[1].selector, { fieldSelector: "spec.signerName=example.com/ca" });
});

Deno.test("a Forbidden source names its namespace and the exact RoleBinding to create", async () => {
  const { objects, resolver } = setup(["spire", "team"]);
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ kind: "Secret", name: "ca", namespace: "team" }] },
  });
  objects.fail("Secret", "team", "ca", { code: 403, body: { message: "forbidden" } });
  const classes = [{ namespace: "shop", name: "a" }];
  await assert.rejects(resolver.resolve({ pod, classes }, []), (e: unknown) => {
    assert.ok(e instanceof SourceError);
    assert.equal(e.reason, "Forbidden");
    assert.equal(
      e.message,
      "cannot read Secret team/ca (from CAProviderClass shop/a): HTTP 403: forbidden; the " +
        "driver's ServiceAccount " +
        'spire-cacerts/spire-cacerts-csi may not read Secrets and ConfigMaps in namespace "team" ' +
        "(no RoleBinding to ClusterRole spire-cacerts-csi-source-reader there); grant it with " +
        "`kubectl create rolebinding spire-cacerts-csi-source-reader " +
        "--clusterrole=spire-cacerts-csi-source-reader " +
        "--serviceaccount=spire-cacerts:spire-cacerts-csi -n team`",
    );
    return true;
  });
  const custom = new SourceResolver({
    objects,
    allowedRefNamespaces: ["team"],
    identity: { serviceAccount: { namespace: "ops", name: "csi" }, sourceReaderRole: "reader" },
  });
  await assert.rejects(
    custom.resolve({ pod, classes }, []),
    /kubectl create rolebinding reader --clusterrole=reader --serviceaccount=ops:csi -n team`$/,
  );
});

Deno.test("a Forbidden ClusterTrustBundle list names the ClusterRole rule, not a RoleBinding", async () => {
  const objects = new SelectingObjects();
  const resolver = new SourceResolver({ objects, allowedRefNamespaces: [] });
  objects.put("CAProviderClass", "shop", "a", { spec: { refs: [{ ...CTB, name: "root" }] } });
  objects.fail("ClusterTrustBundle", "", "root", { code: 403 });
  await assert.rejects(
    resolver.resolve({ pod, classes: [{ namespace: "shop", name: "a" }] }, []),
    (e: unknown) =>
      e instanceof SourceError && e.reason === "Forbidden" &&
      /cannot read ClusterTrustBundle root \(from CAProviderClass shop\/a\): HTTP 403; .*add get, list and watch on them to ClusterRole spire-cacerts-csi/
        .test(e.message),
  );
});

const CM = { apiGroup: "cert-manager.io" };

function caIssuer(secretName: string, resourceVersion = "1") {
  return { metadata: { resourceVersion }, spec: { ca: { secretName } } };
}

async function refusal(resolver: SourceResolver, name = "a"): Promise<SourceError> {
  try {
    await resolver.resolve({ pod, classes: [{ namespace: "shop", name }] }, []);
  } catch (error) {
    assert.ok(error instanceof SourceError, String(error));
    return error;
  }
  throw new Error("resolved");
}

Deno.test("a CA Issuer ref reads its Secret's ca.crt, else tls.crt; issuer and Secret are both followed", async () => {
  const { objects, resolver } = setup();
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ ...CM, kind: "Issuer", name: "team-ca" }] },
  });
  objects.put("Issuer", "shop", "team-ca", caIssuer("team-ca-key"));
  objects.put("Secret", "shop", "team-ca-key", {
    data: { "ca.crt": btoa("CA"), "tls.crt": btoa("LEAF"), "tls.key": btoa("K") },
  });
  const deps: WatchedObject[] = [];
  const classes = [{ namespace: "shop", name: "a" }];
  const sources = await resolver.resolve({ pod, classes }, deps);
  assert.deepEqual(sources, [{
    name: "Secret shop/team-ca-key key ca.crt (Issuer shop/team-ca)",
    text: "CA",
  }]);
  assert.deepEqual(deps.map(objectKey), [
    "CAProviderClass/shop/a",
    "Issuer/shop/team-ca",
    "Secret/shop/team-ca-key",
  ]);
  // A Secret without ca.crt (a kubernetes.io/tls Secret): tls.crt.
  objects.put("Secret", "shop", "team-ca-key", { data: { "tls.crt": btoa("TLS") } });
  assert.deepEqual((await resolver.resolve({ pod, classes }, [])).map((s) => s.text), ["TLS"]);
  // The issuer names another Secret: that one is read (and followed) instead.
  objects.put("Issuer", "shop", "team-ca", caIssuer("rotated", "2"));
  objects.put("Secret", "shop", "rotated", { data: { "ca.crt": btoa("NEW") } });
  const after: WatchedObject[] = [];
  assert.deepEqual((await resolver.resolve({ pod, classes }, after)).map((s) => s.text), ["NEW"]);
  assert.equal(objectKey(after[2]), "Secret/shop/rotated");
});

Deno.test("a ClusterIssuer's Secret is read in the configured cluster resource namespace", async () => {
  const objects = new FakeObjects();
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ ...CM, kind: "ClusterIssuer", name: "root" }] },
  });
  objects.put("ClusterIssuer", "", "root", caIssuer("root-ca"));
  objects.put("Secret", "cert-manager", "root-ca", { data: { "ca.crt": btoa("DEFAULT") } });
  objects.put("Secret", "certs-system", "root-ca", { data: { "ca.crt": btoa("CONFIGURED") } });
  const classes = [{ namespace: "shop", name: "a" }];
  // Allowed without --allowed-ref-namespaces: cluster-scoped, the namespace is the operator's.
  const byDefault = new SourceResolver({ objects, allowedRefNamespaces: [] });
  const deps: WatchedObject[] = [];
  assert.deepEqual((await byDefault.resolve({ pod, classes }, deps)).map((s) => s.text), [
    "DEFAULT",
  ]);
  assert.deepEqual(deps.map(objectKey).slice(1), [
    "ClusterIssuer//root",
    "Secret/cert-manager/root-ca",
  ]);
  const configured = new SourceResolver({
    objects,
    allowedRefNamespaces: [],
    clusterResourceNamespace: "certs-system",
  });
  const sources = await configured.resolve({ pod, classes }, []);
  assert.deepEqual(sources, [{
    name: "Secret certs-system/root-ca key ca.crt (ClusterIssuer root)",
    text: "CONFIGURED",
  }]);
});

Deno.test("an ACME issuer is refused naming the issuer and its type; a missing one is not found", async () => {
  const { objects, resolver } = setup();
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ ...CM, kind: "ClusterIssuer", name: "letsencrypt" }] },
  });
  const missing = await refusal(resolver);
  assert.equal(missing.reason, "SourceNotFound");
  assert.match(
    missing.message,
    /^ClusterIssuer letsencrypt \(from CAProviderClass shop\/a\) not found; create it, or fix spec\.refs\[0\]/,
  );
  objects.put("ClusterIssuer", "", "letsencrypt", {
    spec: { acme: { server: "https://acme-v02.api.letsencrypt.org/directory" } },
  });
  const acme = await refusal(resolver);
  assert.equal(acme.reason, "InvalidRef");
  assert.match(
    acme.message,
    /^ClusterIssuer letsencrypt \(from CAProviderClass shop\/a\) is an acme issuer; only CA issuers \(spec\.ca\.secretName\) can be read/,
  );
  objects.put("ClusterIssuer", "", "letsencrypt", { spec: { selfSigned: {} } });
  assert.match((await refusal(resolver)).message, /a selfSigned issuer has no CA Secret/);
  // A CA issuer whose Secret is missing: the Secret is named, and where it was looked for.
  objects.put("ClusterIssuer", "", "letsencrypt", caIssuer("gone"));
  const gone = await refusal(resolver);
  assert.equal(gone.reason, "SourceNotFound");
  assert.match(
    gone.message,
    /^Secret cert-manager\/gone \(from CAProviderClass shop\/a via ClusterIssuer letsencrypt\) not found/,
  );
});

Deno.test("an Issuer in another namespace follows --allowed-ref-namespaces", async () => {
  const ref = { ...CM, kind: "Issuer", namespace: "certs", name: "shared" };
  const denied = setup();
  denied.objects.put("CAProviderClass", "shop", "a", { spec: { refs: [ref] } });
  const refused = await refusal(denied.resolver);
  assert.equal(refused.reason, "NotAllowed");
  assert.match(
    refused.message,
    /CAProviderClass shop\/a refers to Issuer certs\/shared in another namespace and "certs" is not in --allowed-ref-namespaces/,
  );
  const allowed = setup(["certs"]);
  allowed.objects.put("CAProviderClass", "shop", "a", { spec: { refs: [ref] } });
  allowed.objects.put("Issuer", "certs", "shared", caIssuer("shared-ca"));
  allowed.objects.put("Secret", "certs", "shared-ca", { data: { "ca.crt": btoa("S") } });
  const sources = await allowed.resolver.resolve({
    pod,
    classes: [{ namespace: "shop", name: "a" }],
  }, []);
  assert.deepEqual(sources.map((s) => s.text), ["S"]);
});

Deno.test("a Forbidden issuer Secret names the cluster resource namespace and the RoleBinding", async () => {
  const { objects, resolver } = setup();
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ ...CM, kind: "ClusterIssuer", name: "root" }] },
  });
  objects.put("ClusterIssuer", "", "root", caIssuer("root-ca"));
  objects.fail("Secret", "cert-manager", "root-ca", { code: 403 });
  const error = await refusal(resolver);
  assert.equal(error.reason, "Forbidden");
  assert.match(
    error.message,
    /^cannot read Secret cert-manager\/root-ca \(from CAProviderClass shop\/a via ClusterIssuer root\): HTTP 403; .*in namespace "cert-manager"/,
  );
  assert.ok(
    error.message.endsWith(
      "`kubectl create rolebinding spire-cacerts-csi-source-reader " +
        "--clusterrole=spire-cacerts-csi-source-reader " +
        "--serviceaccount=spire-cacerts:spire-cacerts-csi -n cert-manager`",
    ),
    error.message,
  );
  // The issuer list itself refused: the ClusterRole rule, not a RoleBinding.
  objects.fail("ClusterIssuer", "", "root", { code: 403 });
  const issuer = await refusal(resolver);
  assert.equal(issuer.reason, "Forbidden");
  assert.match(
    issuer.message,
    /cannot read ClusterIssuer root \(from CAProviderClass shop\/a\): HTTP 403; .*may not list issuers\.cert-manager\.io and clusterissuers\.cert-manager\.io; add get, list and watch on them to ClusterRole spire-cacerts-csi/,
  );
});

Deno.test("issuers not served (cert-manager not installed) are unreadable, with the fix", async () => {
  const { objects, resolver } = setup();
  objects.put("CAProviderClass", "shop", "a", {
    spec: { refs: [{ ...CM, kind: "Issuer", name: "team-ca" }] },
  });
  objects.fail("Issuer", "shop", "team-ca", { code: 404 });
  const error = await refusal(resolver);
  assert.equal(error.reason, "SourceUnreadable");
  assert.equal(
    error.message,
    "cannot read Issuer shop/team-ca (from CAProviderClass shop/a): the API server does not " +
      "serve issuers.cert-manager.io/v1 (HTTP 404); install cert-manager (its CRDs), or remove " +
      "spec.refs[0]; retrying",
  );
});
