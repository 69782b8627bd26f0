import assert from "node:assert/strict";
import type { WatchedObject } from "../kube/mod.ts";
import { DependencyIndex } from "./dependency_index.ts";

const cls: WatchedObject = { kind: "CAProviderClass", namespace: "shop", name: "spire-ca" };
const ca: WatchedObject = { kind: "Secret", namespace: "shop", name: "ca" };
const other: WatchedObject = { kind: "ConfigMap", namespace: "shop", name: "roots" };

Deno.test("dependents are the volumes whose latest deps include the object", () => {
  const index = new DependencyIndex<string>();
  index.replace("v1", [cls, ca]);
  index.replace("v2", [cls, other]);
  assert.deepEqual(index.dependents("CAProviderClass/shop/spire-ca"), ["v1", "v2"]);
  assert.deepEqual(index.dependents("Secret/shop/ca"), ["v1"]);
  assert.deepEqual(index.dependents("Secret/shop/none"), []);
  assert.equal(index.objectCount, 3);
});

Deno.test("replace returns the previous deps, one per read, and drops objects no longer read", () => {
  const index = new DependencyIndex<string>();
  assert.deepEqual(index.replace("v1", [cls, ca, ca]), []);
  assert.deepEqual(index.replace("v1", [cls, other]), [cls, ca, ca]);
  assert.deepEqual(index.dependents("Secret/shop/ca"), []);
  assert.deepEqual(index.dependents("ConfigMap/shop/roots"), ["v1"]);
  assert.deepEqual(index.depsOf("v1"), [cls, other]);
});

Deno.test("remove returns the volume's deps and leaves no empty entry behind", () => {
  const index = new DependencyIndex<string>();
  index.replace("v1", [cls, ca]);
  assert.deepEqual(index.remove("v1"), [cls, ca]);
  assert.equal(index.objectCount, 0);
  assert.deepEqual(index.depsOf("v1"), []);
  assert.deepEqual(index.remove("v1"), []);
});
