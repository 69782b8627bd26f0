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
