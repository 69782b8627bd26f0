/**
 * `@peculiar/x509`, loaded after the small part of the Reflect metadata API that its dependency
 * `tsyringe` needs.
 *
 * tsyringe refuses to load unless `Reflect.getMetadata` exists and then calls `getMetadata`,
 * `getOwnMetadata` and `defineMetadata` to record constructor parameter tokens. Those three are
 * implemented here over a WeakMap (own lookups per target, inherited lookups along the prototype
 * chain), because `reflect-metadata` is not one of this project's dependencies. An existing
 * implementation is left alone.
 *
 * @module
 */

type Key = unknown;
type Target = object;
const store = new WeakMap<Target, Map<string | symbol | undefined, Map<Key, unknown>>>();

function ownMap(target: Target, property: string | symbol | undefined, create: boolean) {
  let byProperty = store.get(target);
  if (!byProperty) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let map = byProperty.get(property);
  if (!map && create) {
    map = new Map();
    byProperty.set(property, map);
  }
  return map;
}

const reflect = Reflect as unknown as {
  getMetadata?: (key: Key, target: Target, property?: string | symbol) => unknown;
  getOwnMetadata?: (key: Key, target: Target, property?: string | symbol) => unknown;
  defineMetadata?: (key: Key, value: unknown, target: Target, property?: string | symbol) => void;
};
if (typeof reflect.getMetadata !== "function") {
  reflect.getOwnMetadata = (key, target, property) => ownMap(target, property, false)?.get(key);
  reflect.defineMetadata = (key, value, target, property) => {
    ownMap(target, property, true)!.set(key, value);
  };
  reflect.getMetadata = (key, target, property) => {
    for (let t: Target | null = target; t; t = Object.getPrototypeOf(t)) {
      const map = ownMap(t, property, false);
      if (map?.has(key)) return map.get(key);
    }
    return undefined;
  };
}

/** The `@peculiar/x509` module. */
export const x509: typeof import("@peculiar/x509") = await import("@peculiar/x509");
