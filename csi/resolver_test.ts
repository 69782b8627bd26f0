import assert from "node:assert/strict";
import { KeyNotFoundError, SourceError } from "../api/mod.ts";
import type { WatchedObject } from "../kube/mod.ts";
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
