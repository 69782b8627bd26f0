/**
 * Which volume depends on which watched object, kept in one place: each volume's list of the
 * objects its last render read (one entry per read, so every read's watch reference can be given
 * back) and the reverse map from object key to volumes, so a change to one object re-renders
 * exactly the volumes that read it.
 *
 * @module
 */

import { objectKey, type WatchedObject } from "../kube/mod.ts";

/** Volumes by the objects they read, and the objects each volume read. */
export class DependencyIndex<V> {
  readonly #deps = new Map<V, WatchedObject[]>();
  readonly #byKey = new Map<string, Set<V>>();

  /** Number of distinct objects some volume depends on. */
  get objectCount(): number {
    return this.#byKey.size;
  }

  /** The objects `volume` depends on, one entry per read (empty when unknown). */
  depsOf(volume: V): readonly WatchedObject[] {
    return this.#deps.get(volume) ?? [];
  }

  /** The volumes that depend on the object with this key (`Kind/namespace/name`). */
  dependents(key: string): V[] {
    return [...this.#byKey.get(key) ?? []];
  }

  /**
   * Makes `deps` the objects `volume` depends on.
   *
   * @param volume the volume
   * @param deps the objects its latest render read
   * @returns the objects it depended on before, one entry per read, for the caller to release
   */
  replace(volume: V, deps: readonly WatchedObject[]): WatchedObject[] {
    const old = this.#deps.get(volume) ?? [];
    for (const dep of deps) {
      const key = objectKey(dep);
      let set = this.#byKey.get(key);
      if (!set) this.#byKey.set(key, set = new Set());
      set.add(volume);
    }
    const keep = new Set(deps.map(objectKey));
    for (const dep of old) {
      const key = objectKey(dep);
      if (!keep.has(key)) this.#unlink(key, volume);
    }
    if (deps.length > 0) this.#deps.set(volume, [...deps]);
    else this.#deps.delete(volume);
    return old;
  }

  /**
   * Forgets `volume`.
   *
   * @param volume the volume
   * @returns the objects it depended on, one entry per read, for the caller to release
   */
  remove(volume: V): WatchedObject[] {
    return this.replace(volume, []);
  }

  #unlink(key: string, volume: V): void {
    const set = this.#byKey.get(key);
    if (!set) return;
    set.delete(volume);
    if (set.size === 0) this.#byKey.delete(key);
  }
}
