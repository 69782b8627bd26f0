/**
 * A volume's CAProviderClasses turned into PEM sources: each class and each object it refers to is
 * read through an injected {@link ObjectSource} (in the driver, `kube/`'s ObjectWatcher: a
 * list+watch of that single object), the namespace rule (`--allowed-ref-namespaces`) is applied,
 * and every failure is a {@link SourceError} whose reason `toCsiError` maps to a gRPC code. Every
 * object read is recorded, even an unusable one, so a fix to it is picked up.
 *
 * @module
 */

import {
  type ObjectName,
  parseClassRefs,
  readRefText,
  refObjectName,
  SourceError,
} from "../api/mod.ts";
import { describeApiError, type WatchedObject } from "../kube/mod.ts";
import type { PemSource } from "../trust_store/mod.ts";
import type { PodRef } from "./validation.ts";

/**
 * Reads and follows single API objects (the shape of `kube/`'s `ObjectWatcher`, which the driver
 * uses; tests pass an in-memory one). Changes are reported to whoever built it.
 */
export interface ObjectSource {
  /** Objects followed now. */
  readonly size: number;
  /**
   * Starts (or shares) following an object; resolves once its current state is known. Each call
   * is balanced by {@link ObjectSource.release}.
   */
  acquire(o: WatchedObject): Promise<void>;
  /** The object now: null when it does not exist, undefined when not followed. */
  get(o: WatchedObject): Record<string, unknown> | null | undefined;
  /** The error of the last failed read (undefined after a good one). */
  error(o: WatchedObject): unknown;
  /** Gives back one {@link ObjectSource.acquire}. */
  release(o: WatchedObject): void;
  /** Stops following everything. */
  stop(): void;
}

/** What a volume asks for. */
export interface ResolveRequest {
  /** The pod the volume belongs to (its namespace is always allowed). */
  pod: PodRef;
  /** CAProviderClasses, in attribute order. */
  classes: readonly ObjectName[];
}

/** Options for {@link SourceResolver}. */
export interface SourceResolverOptions {
  /** Where objects are read. */
  objects: ObjectSource;
  /** Namespaces besides the pod's that classes and refs may be in (`*`: any). */
  allowedRefNamespaces: readonly string[];
}

/** Resolves CAProviderClasses into PEM sources; see the module documentation. */
export class SourceResolver {
  readonly #objects: ObjectSource;
  readonly #allowed: readonly string[];

  /**
   * Makes a resolver.
   *
   * @param options the object source and the namespace rule
   */
  constructor(options: SourceResolverOptions) {
    this.#objects = options.objects;
    this.#allowed = options.allowedRefNamespaces;
  }

  /**
   * Resolves the classes into PEM sources, in class and ref order.
   *
   * @param request the pod and its classes
   * @param deps receives every object acquired (also when this throws); the caller releases them
   * @throws {SourceError} a class or ref not allowed, missing, unreadable or without the key
   */
  async resolve(request: ResolveRequest, deps: WatchedObject[]): Promise<PemSource[]> {
    const { pod } = request;
    const sources: PemSource[] = [];
    for (const cls of request.classes) {
      const label = `CAProviderClass ${cls.namespace}/${cls.name}`;
      if (!this.#isAllowed(cls.namespace, pod)) {
        throw new SourceError(
          `${label} is in another namespace than the pod and "${cls.namespace}" is not in ` +
            `--allowed-ref-namespaces`,
          { reason: "NotAllowed" },
        );
      }
      const watchedClass: WatchedObject = { kind: "CAProviderClass", ...cls };
      const object = await this.#use(deps, watchedClass);
      this.#unreadable(watchedClass, object, label);
      if (!object) {
        throw new SourceError(`${label} not found`, { reason: "ClassNotFound" });
      }
      for (const ref of parseClassRefs(object, cls)) {
        if (!this.#isAllowed(ref.namespace, pod)) {
          throw new SourceError(
            `${label} refers to ${ref.kind} ${ref.namespace}/${ref.name} in another namespace and ` +
              `"${ref.namespace}" is not in --allowed-ref-namespaces`,
            { reason: "NotAllowed" },
          );
        }
        const watched: WatchedObject = { kind: ref.kind, namespace: ref.namespace, name: ref.name };
        const source = await this.#use(deps, watched);
        this.#unreadable(watched, source, `${refObjectName(ref)} (from ${label})`);
        const { key, text } = readRefText(ref, source, label);
        sources.push({ name: `${refObjectName(ref)} key ${key}`, text });
      }
    }
    return sources;
  }

  #isAllowed(namespace: string, pod: PodRef): boolean {
    return namespace === pod.namespace || this.#allowed.includes(namespace) ||
      this.#allowed.includes("*");
  }

  async #use(deps: WatchedObject[], o: WatchedObject): Promise<Record<string, unknown> | null> {
    deps.push(o);
    await this.#objects.acquire(o);
    return this.#objects.get(o) ?? null;
  }

  /** An object never read because its list failed is unreadable, not missing: say so. */
  #unreadable(o: WatchedObject, object: Record<string, unknown> | null, what: string): void {
    const error = this.#objects.error(o);
    if (object !== null || error === undefined) return;
    const forbidden = (error as { code?: unknown }).code === 403;
    throw new SourceError(
      `cannot read ${what}: ${describeApiError(error)}` +
        (forbidden ? ` (grant the driver's ServiceAccount get, list and watch on it)` : ""),
      { reason: forbidden ? "Forbidden" : "SourceUnreadable", cause: error },
    );
  }
}
