/**
 * A volume's CAProviderClasses turned into PEM sources: each class and each object it refers to is
 * read through an injected {@link ObjectSource} (in the driver, `kube/`'s ObjectWatcher: a
 * list+watch of that single object, or of the ClusterTrustBundles of a signer), the namespace rule
 * (`--allowed-ref-namespaces`) is applied to Secret, ConfigMap and Issuer refs (not to
 * ClusterIssuers: cluster-scoped, their Secret in the operator's `--cluster-resource-namespace`),
 * a cert-manager CA issuer is read as the Secret its `spec.ca.secretName` names, and every
 * failure is a {@link SourceError} whose reason `toCsiError` maps to a gRPC code. Every object
 * read is recorded, even an unusable one, so a fix to it is picked up. A ref the driver may not
 * read (403) is `Forbidden`, with a message naming the namespace and the RoleBinding that grants
 * the read (`source_access.ts`), also for an issuer's Secret (e.g. in `cert-manager`).
 *
 * @module
 */

import {
  type ClassRef,
  DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
  isIssuerRef,
  isSourceRef,
  issuerNotServedMessage,
  type IssuerRef,
  issuerSecretRef,
  type ObjectName,
  parseClassRefs,
  readRefText,
  readTrustBundles,
  refObjectName,
  SourceError,
  type SourceRef,
  TRUST_BUNDLE_SIGNER_FIELD,
  type TrustBundleRef,
} from "../api/mod.ts";
import { describeApiError, type WatchedObject } from "../kube/mod.ts";
import type { PemSource } from "../trust_store/mod.ts";
import { DRIVER_CLUSTER_ROLE, type DriverIdentity, forbiddenMessage } from "./source_access.ts";
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
  /** Who the driver runs as, for `Forbidden` messages (default: the manifests' names). */
  identity?: DriverIdentity;
  /**
   * cert-manager's cluster resource namespace, where a ClusterIssuer's Secret lives
   * (`--cluster-resource-namespace`, default `cert-manager`).
   */
  clusterResourceNamespace?: string;
}

/** Resolves CAProviderClasses into PEM sources; see the module documentation. */
export class SourceResolver {
  readonly #objects: ObjectSource;
  readonly #allowed: readonly string[];
  readonly #identity: DriverIdentity;
  readonly #clusterResourceNamespace: string;

  /**
   * Makes a resolver.
   *
   * @param options the object source and the namespace rule
   */
  constructor(options: SourceResolverOptions) {
    this.#objects = options.objects;
    this.#allowed = options.allowedRefNamespaces;
    this.#identity = options.identity ?? {};
    this.#clusterResourceNamespace = options.clusterResourceNamespace ??
      DEFAULT_CLUSTER_RESOURCE_NAMESPACE;
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
      if (object === null && this.#objects.error(watchedClass) !== undefined) {
        const error = this.#objects.error(watchedClass);
        const forbidden = (error as { code?: unknown }).code === 403;
        const role = this.#identity.clusterRole ?? DRIVER_CLUSTER_ROLE;
        throw new SourceError(
          `cannot read ${label}: ${describeApiError(error)}` +
            (forbidden
              ? `; ClusterRole ${role} must grant get, list and watch on caproviderclasses`
              : "; retrying"),
          { reason: forbidden ? "Forbidden" : "SourceUnreadable", cause: error },
        );
      }
      if (!object) {
        throw new SourceError(`${label} not found`, { reason: "ClassNotFound" });
      }
      for (const ref of parseClassRefs(object, cls)) {
        if (isSourceRef(ref)) sources.push(await this.#readSource(ref, pod, label, deps));
        else if (isIssuerRef(ref)) sources.push(await this.#readIssuer(ref, pod, label, deps));
        else sources.push(...await this.#readBundles(ref, label, deps));
      }
    }
    return sources;
  }

  #isAllowed(namespace: string, pod: PodRef): boolean {
    return namespace === pod.namespace || this.#allowed.includes(namespace) ||
      this.#allowed.includes("*");
  }

  /** A Secret or ConfigMap ref: the namespace rule, then the key's PEM. */
  async #readSource(
    ref: SourceRef,
    pod: PodRef,
    label: string,
    deps: WatchedObject[],
  ): Promise<PemSource> {
    if (!this.#isAllowed(ref.namespace, pod)) {
      throw new SourceError(
        `${label} refers to ${ref.kind} ${ref.namespace}/${ref.name} in another namespace and ` +
          `"${ref.namespace}" is not in --allowed-ref-namespaces`,
        { reason: "NotAllowed" },
      );
    }
    const watched: WatchedObject = { kind: ref.kind, namespace: ref.namespace, name: ref.name };
    const source = await this.#use(deps, watched);
    this.#unreadable(watched, source, ref, label);
    const { key, text } = readRefText(ref, source, label);
    return { name: `${refObjectName(ref)} key ${key}`, text };
  }

  /**
   * An Issuer or ClusterIssuer ref: the namespace rule for an Issuer (a ClusterIssuer is
   * cluster-scoped and its Secret's namespace is the operator's `--cluster-resource-namespace`, so
   * it is allowed), then the issuer, then the Secret its `spec.ca.secretName` names, read as a
   * keyless Secret ref. Both are dependencies: a change of the Secret or of the issuer's
   * `secretName` is picked up.
   */
  async #readIssuer(
    ref: IssuerRef,
    pod: PodRef,
    label: string,
    deps: WatchedObject[],
  ): Promise<PemSource> {
    const name = refObjectName(ref);
    if (ref.kind === "Issuer" && !this.#isAllowed(ref.namespace, pod)) {
      throw new SourceError(
        `${label} refers to ${name} in another namespace and "${ref.namespace}" is not in ` +
          `--allowed-ref-namespaces`,
        { reason: "NotAllowed" },
      );
    }
    const watched: WatchedObject = { kind: ref.kind, namespace: ref.namespace, name: ref.name };
    const issuer = await this.#use(deps, watched);
    this.#unreadable(watched, issuer, ref, label);
    const secretRef = issuerSecretRef(ref, issuer, this.#clusterResourceNamespace, label);
    const from = `${label} via ${name}`;
    const secret: WatchedObject = {
      kind: "Secret",
      namespace: secretRef.namespace,
      name: secretRef.name,
    };
    const object = await this.#use(deps, secret);
    this.#unreadable(secret, object, secretRef, from);
    const { key, text } = readRefText(secretRef, object, from);
    return { name: `${refObjectName(secretRef)} key ${key} (${name})`, text };
  }

  /**
   * A ClusterTrustBundle ref: the bundle by name, or every bundle of the signer matching the
   * labels (one list+watch with `spec.signerName` and label selectors). Bundles are cluster-scoped
   * trust anchors, so the namespace rule does not apply.
   */
  async #readBundles(
    ref: TrustBundleRef,
    label: string,
    deps: WatchedObject[],
  ): Promise<PemSource[]> {
    const watched: WatchedObject = ref.name !== undefined
      ? { kind: "ClusterTrustBundle", namespace: "", name: ref.name }
      : {
        kind: "ClusterTrustBundle",
        namespace: "",
        name: "",
        selector: {
          fieldSelector: `${TRUST_BUNDLE_SIGNER_FIELD}=${ref.signerName}`,
          ...(ref.labelSelector ? { labelSelector: ref.labelSelector } : {}),
        },
      };
    const state = await this.#use(deps, watched);
    this.#unreadable(watched, state, ref, label);
    const bundles = ref.name !== undefined
      ? (state ? [state] : [])
      : ((state?.items ?? []) as Record<string, unknown>[]);
    return readTrustBundles(ref, bundles, label);
  }

  async #use(deps: WatchedObject[], o: WatchedObject): Promise<Record<string, unknown> | null> {
    deps.push(o);
    await this.#objects.acquire(o);
    return this.#objects.get(o) ?? null;
  }

  /** An object never read because its list failed is unreadable, not missing: say so. */
  #unreadable(
    o: WatchedObject,
    object: Record<string, unknown> | null,
    ref: ClassRef,
    label: string,
  ): void {
    const error = this.#objects.error(o);
    if (object !== null || error === undefined) return;
    if ((error as { code?: unknown }).code === 403) {
      throw new SourceError(forbiddenMessage(ref, label, this.#identity, describeApiError(error)), {
        reason: "Forbidden",
        cause: error,
      });
    }
    if ((error as { code?: unknown }).code === 404 && isIssuerRef(ref)) {
      throw new SourceError(issuerNotServedMessage(ref, label), {
        reason: "SourceUnreadable",
        cause: error,
      });
    }
    throw new SourceError(
      `cannot read ${refObjectName(ref)} (from ${label}): ${describeApiError(error)}; retrying`,
      { reason: "SourceUnreadable", cause: error },
    );
  }
}
