/**
 * The namespace controller and the bundle sync.
 *
 * - Every namespace that is not excluded gets the CAProviderClass the webhook points pods at,
 *   referencing the ClusterTrustBundle when it is published (else the Secret),
 *   written with server-side apply under its own field manager and labelled as managed. One a
 *   user wrote (no managed label) is never touched; one whose fields another manager took over
 *   makes the (unforced) apply fail with a conflict, which is logged and left alone.
 * - SPIRE's bundle ConfigMap `spire/spire-bundle` (key `bundle.crt`) is mirrored, expired roots
 *   dropped and every other root kept (so an old CA stays until SPIRE drops it), into two
 *   targets, each switchable: the Secret `spire/spire-ca-bundle` (key `ca.crt`, for classes
 *   written the kubeops way) and the ClusterTrustBundle of the trust domain's signer
 *   (`cacerts.csi.cert-manager.io/spire-<trust-domain>`, see `cluster_trust_bundle.ts`), which
 *   needs no Secret read by anyone. The ConfigMap is watched by name
 *   (`fieldSelector=metadata.name=spire-bundle`), so the webhook's Role names it. One target
 *   failing does not hold back the other.
 *
 * Every write is compare-before-write and the desired state is a pure function of what is read,
 * so two replicas running this at once converge on the same objects; no leader election is needed.
 *
 * @module
 */

import type { V1ConfigMap, V1Namespace, V1Secret } from "@kubernetes/client-node";
import {
  buildClass,
  type CAProviderClassObject,
  CLASS_GROUP,
  CLASS_PLURAL,
  CLASS_VERSION,
  TRUST_BUNDLE_GROUP,
  TRUST_BUNDLE_KIND,
  TRUST_BUNDLE_PLURAL,
  TRUST_BUNDLE_VERSION,
} from "../api/mod.ts";
import { X509Certificate } from "node:crypto";
import { buildTrustSet } from "../trust_store/mod.ts";
import { bundleObjectName, clusterTrustBundle, signerNameFor } from "./cluster_trust_bundle.ts";
import { toPem } from "../spire/mod.ts";
import { type Logger, SILENT_LOGGER } from "../cli/mod.ts";
import {
  describeApiError,
  Informer,
  isApiStatus,
  KubeApiError,
  type KubeClient,
  resourcePath,
} from "../kube/mod.ts";

/** Field manager of every write. */
export const FIELD_MANAGER = "spire-cacerts-webhook";
/** Label marking objects this controller owns. */
export const MANAGED_LABEL = "app.kubernetes.io/managed-by";
/** Value of {@link MANAGED_LABEL}. */
export const MANAGED_VALUE = "spire-cacerts";
/** Namespaces never given a class. */
export const DEFAULT_EXCLUDED_NAMESPACES = [
  "kube-system",
  "kube-public",
  "kube-node-lease",
  "spire",
  "spire-cacerts",
];

/** One key of a namespaced object. */
export interface KeyRef {
  /** Namespace. */
  namespace: string;
  /** Object name. */
  name: string;
  /** Key in `data`. */
  key: string;
}

/** A structured logger (the shell's JSON logger). */
export type Log = (
  level: "debug" | "info" | "warn" | "error",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

/** Options of {@link Controller}. */
export interface ControllerOptions {
  /** Cluster access. */
  client: KubeClient;
  /** Name of the per-namespace CAProviderClass (`spire-ca`). */
  className: string;
  /** Namespaces left without a class. */
  excludedNamespaces: readonly string[];
  /** SPIRE's bundle ConfigMap (default `spire/spire-bundle` key `bundle.crt`). */
  bundleConfigMap?: KeyRef;
  /** The Secret kept equal to it (default `spire/spire-ca-bundle` key `ca.crt`). */
  bundleSecret?: KeyRef;
  /** Whether that Secret is kept (default true; `--bundle-secret`). */
  writeBundleSecret?: boolean;
  /**
   * Publish the bundle as the ClusterTrustBundle of this trust domain's signer
   * (`--cluster-trust-bundle`, `--trust-domain`); absent: not published.
   */
  clusterTrustBundle?: { trustDomain: string };
  /**
   * How often every namespace and the bundle are re-checked without an event (ms, default 10 min):
   * roots that expired meanwhile are dropped and deleted classes come back.
   */
  resyncMs?: number;
  /** Where events go. */
  log?: Logger;
  /** Called after each class write, each Secret write and each ClusterTrustBundle write. */
  onWrite?: (what: BundleWrite) => void;
}

/** What a controller write changed. */
export type BundleWrite = "class" | "secret" | "cluster-trust-bundle";

/** What {@link Controller.syncBundle} wrote. */
export interface BundleSync {
  /** The Secret was written. */
  secret: boolean;
  /** The ClusterTrustBundle was written. */
  clusterTrustBundle: boolean;
}

/** One bundle target that could not be written. */
export interface BundleFailure {
  /** The object, e.g. `Secret spire/spire-ca-bundle`. */
  target: string;
  /** The flag that turns this target off, e.g. `--bundle-secret=false`. */
  off: string;
  /** Why. */
  error: unknown;
}

/** One or both bundle targets could not be written; the other was still tried. */
export class BundlePublishError extends Error {
  /** The targets that failed, each with its error. */
  readonly failures: readonly BundleFailure[];

  /**
   * Makes the error.
   *
   * @param failures each target that failed and why (the first is the `cause`)
   */
  constructor(failures: readonly BundleFailure[]) {
    super(
      `SPIRE bundle not published to ${
        failures.map((f) => `${f.target} (${describeFailure(f)})`).join("; ")
      }`,
      { cause: failures[0]?.error },
    );
    this.name = "BundlePublishError";
    this.failures = failures;
  }
}

function describeFailure(failure: BundleFailure): string {
  const code = failure.error instanceof KubeApiError ? failure.error.code : undefined;
  const hint = code === 403
    ? `; grant it in manifests/webhook/rbac.yaml, or run with ${failure.off}`
    : code === 404
    ? `; the API is not served: run with ${failure.off} on this cluster`
    : "";
  return `${describeApiError(failure.error)}${hint}`;
}

/**
 * What the managed class references: the ClusterTrustBundle by name (the default, when it is
 * published: no one needs to read a Secret), or the bundle Secret's key.
 */
export type ClassSource = KeyRef | { clusterTrustBundle: string };

/** The CAProviderClass the controller wants in a namespace (built by `buildClass`). */
export function desiredClass(
  namespace: string,
  className: string,
  source: ClassSource,
): CAProviderClassObject {
  return buildClass({
    namespace,
    name: className,
    labels: { [MANAGED_LABEL]: MANAGED_VALUE },
    refs: [
      "clusterTrustBundle" in source
        ? { kind: TRUST_BUNDLE_KIND, name: source.clusterTrustBundle }
        : { kind: "Secret", namespace: source.namespace, name: source.name, key: source.key },
    ],
  });
}

/**
 * The Secret's PEM for SPIRE's bundle text: the trust-store engine's set (strict PEM, roots only,
 * expired and not-yet-valid certificates dropped, deduplicated, ordered by SHA-256 so every
 * replica computes the same bytes), one CERTIFICATE block per root.
 *
 * @throws {PemError} when the text is not a clean list of CERTIFICATE blocks
 * @throws {EmptyTrustSetError} when no valid root remains (the Secret is then left as it is)
 */
export async function bundleSecretPem(
  text: string,
  source: string,
  now = new Date(),
): Promise<{ pem: string; warnings: readonly string[] }> {
  const set = await buildTrustSet([{ name: source, text }], { now });
  return {
    pem: set.certificates.map((cert) => toPem("CERTIFICATE", cert.der)).join(""),
    warnings: set.warnings,
  };
}

/**
 * The SPIFFE trust domains the certificates of a PEM name in a `spiffe://<trust-domain>` URI SAN
 * (SPIRE's own CA certificates carry one; an UpstreamAuthority's roots usually do not), sorted.
 */
export function pemTrustDomains(pem: string): string[] {
  const found = new Set<string>();
  for (
    const block of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
  ) {
    const san = new X509Certificate(block).subjectAltName ?? "";
    for (const m of san.matchAll(/URI:spiffe:\/\/([^/,\s]+)/g)) found.add(m[1]);
  }
  return [...found].sort();
}

/** JSON with object keys sorted, so stored objects compare equal whatever their key order. */
function canonical(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
        : v,
  );
}

function countRoots(pem: string): number {
  return pem.match(/BEGIN CERTIFICATE/g)?.length ?? 0;
}

const isStatus = isApiStatus;

/** What the controller needs of an {@link Informer} of any kind. */
interface Watching {
  start(): Promise<void>;
  stop(): Promise<void>;
  on(event: "error", handler: (error: unknown) => void): void;
}

function classPath(namespace: string, name: string): string {
  return resourcePath({
    group: CLASS_GROUP,
    version: CLASS_VERSION,
    namespace,
    plural: CLASS_PLURAL,
    name,
  });
}

/** Keeps per-namespace CAProviderClasses, the bundle Secret and the ClusterTrustBundle current. */
export class Controller {
  #options: ControllerOptions;
  #client: KubeClient;
  #secret: KeyRef;
  #configMap: KeyRef;
  #excluded: Set<string>;
  #signerName: string | undefined;
  #reportedMismatch = "";
  #log: Logger;
  #informers: Watching[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  /**
   * Creates the controller; nothing runs until {@link start}.
   *
   * @throws {TrustDomainError} when `clusterTrustBundle.trustDomain` cannot name a signer
   */
  constructor(options: ControllerOptions) {
    this.#options = options;
    this.#client = options.client;
    this.#secret = options.bundleSecret ??
      { namespace: "spire", name: "spire-ca-bundle", key: "ca.crt" };
    this.#configMap = options.bundleConfigMap ??
      { namespace: "spire", name: "spire-bundle", key: "bundle.crt" };
    this.#excluded = new Set(options.excludedNamespaces);
    this.#signerName = options.clusterTrustBundle === undefined
      ? undefined
      : signerNameFor(options.clusterTrustBundle.trustDomain);
    this.#log = options.log ?? SILENT_LOGGER;
  }

  /**
   * Makes sure `namespace` has the class: creates it when absent, re-applies it when it is ours
   * and differs, leaves it when a user wrote it. Returns what it did.
   */
  async ensureClass(
    namespace: string,
  ): Promise<"excluded" | "created" | "updated" | "unchanged" | "user-owned" | "conflict"> {
    if (this.#excluded.has(namespace)) return "excluded";
    const name = this.#options.className;
    const desired = desiredClass(
      namespace,
      name,
      this.#signerName === undefined
        ? this.#secret
        : { clusterTrustBundle: bundleObjectName(this.#signerName) },
    );
    const log = this.#log.with({ namespace, name });
    let existing: { metadata?: { labels?: Record<string, string> }; spec?: unknown } | undefined;
    try {
      existing = await this.#client.get(classPath(namespace, name));
    } catch (error) {
      if (!isStatus(error, 404)) throw error;
    }
    if (existing !== undefined) {
      if (existing.metadata?.labels?.[MANAGED_LABEL] !== MANAGED_VALUE) {
        log.info("CAProviderClass written by someone else; left as is");
        return "user-owned";
      }
      if (canonical(existing.spec) === canonical(desired.spec)) return "unchanged";
    }
    try {
      // Server-side apply without force: a field another manager owns makes this a 409.
      await this.#client.apply(classPath(namespace, name), desired, {
        fieldManager: FIELD_MANAGER,
        force: false,
      });
    } catch (error) {
      if (isStatus(error, 409)) {
        log.warn("CAProviderClass fields owned by another manager; left as is");
        return "conflict";
      }
      throw error;
    }
    this.#options.onWrite?.("class");
    log.info(existing ? "CAProviderClass updated" : "CAProviderClass created");
    return existing ? "updated" : "created";
  }

  /**
   * Copies the current roots of the bundle ConfigMap into each enabled target that differs: the
   * Secret and the ClusterTrustBundle. A target that fails does not stop the other.
   *
   * @throws {BundlePublishError} naming each target that failed, after trying both
   * @throws {PemError} when SPIRE's bundle is not a clean list of CERTIFICATE blocks
   * @throws {EmptyTrustSetError} when no valid root remains (the targets are then left as they are)
   */
  async syncBundle(configMap?: V1ConfigMap): Promise<BundleSync> {
    const source =
      `ConfigMap ${this.#configMap.namespace}/${this.#configMap.name} key ${this.#configMap.key}`;
    const cm = configMap ?? await this.#client.get<V1ConfigMap>(resourcePath({
      group: "",
      version: "v1",
      namespace: this.#configMap.namespace,
      plural: "configmaps",
      name: this.#configMap.name,
    })).catch((error) => {
      if (isStatus(error, 404)) return undefined;
      throw error;
    });
    const text = cm?.data?.[this.#configMap.key];
    const result: BundleSync = { secret: false, clusterTrustBundle: false };
    if (!text) {
      this.#log.warn("SPIRE bundle not published yet", { source });
      return result;
    }
    const { pem, warnings } = await bundleSecretPem(text, source);
    for (const warning of warnings) this.#log.debug("SPIRE bundle entry left out", { warning });
    this.#checkTrustDomain(pem);
    const failures: BundleFailure[] = [];
    const targets: [string, string, () => Promise<void>][] = [];
    if (this.#options.writeBundleSecret ?? true) {
      targets.push([
        `Secret ${this.#secret.namespace}/${this.#secret.name}`,
        "--bundle-secret=false",
        async () => {
          result.secret = await this.#syncSecret(pem);
        },
      ]);
    }
    if (this.#signerName !== undefined) {
      const signerName = this.#signerName;
      targets.push([
        `ClusterTrustBundle ${bundleObjectName(signerName)}`,
        "--cluster-trust-bundle=false",
        async () => {
          result.clusterTrustBundle = await this.#syncClusterTrustBundle(signerName, pem);
        },
      ]);
    }
    await Promise.all(
      targets.map(([target, off, work]) =>
        work().catch((error) => failures.push({ target, off, error }))
      ),
    );
    if (failures.length > 0) throw new BundlePublishError(failures);
    return result;
  }

  /**
   * Warns (once per distinct finding) when SPIRE's roots name trust domains that do not include
   * `--trust-domain`: the bundle is still published, under the configured signer.
   */
  #checkTrustDomain(pem: string): void {
    const configured = this.#options.clusterTrustBundle?.trustDomain;
    if (configured === undefined) return;
    const named = pemTrustDomains(pem);
    const mismatch = named.length > 0 && !named.includes(configured) ? named.join(",") : "";
    if (mismatch !== "" && mismatch !== this.#reportedMismatch) {
      this.#log.warn(
        `SPIRE's roots name trust domain ${mismatch}, not --trust-domain ${configured}; the ` +
          `ClusterTrustBundle is published under signer ${this.#signerName}: set ` +
          `--trust-domain to SPIRE's trust_domain and the signer and bundle names in ` +
          `manifests/webhook/rbac.yaml to match`,
        { trustDomains: named, trustDomain: configured },
      );
    }
    this.#reportedMismatch = mismatch;
  }

  async #syncSecret(pem: string): Promise<boolean> {
    const secretPath = resourcePath({
      group: "",
      version: "v1",
      namespace: this.#secret.namespace,
      plural: "secrets",
      name: this.#secret.name,
    });
    const current = await this.#client.get<V1Secret>(secretPath).catch((error) => {
      if (isStatus(error, 404)) return undefined;
      throw error;
    });
    const currentPem = current?.data?.[this.#secret.key];
    if (
      currentPem !== undefined &&
      current?.metadata?.labels?.[MANAGED_LABEL] === MANAGED_VALUE &&
      new TextDecoder().decode(Uint8Array.fromBase64(currentPem)) === pem
    ) return false;
    await this.#client.apply(
      secretPath,
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name: this.#secret.name,
          namespace: this.#secret.namespace,
          labels: { [MANAGED_LABEL]: MANAGED_VALUE },
        },
        type: "Opaque",
        data: { [this.#secret.key]: new TextEncoder().encode(pem).toBase64() },
      },
      { fieldManager: FIELD_MANAGER, force: true },
    );
    this.#options.onWrite?.("secret");
    this.#log.info("SPIRE CA bundle Secret updated", {
      secret: `${this.#secret.namespace}/${this.#secret.name}`,
      roots: countRoots(pem),
    });
    return true;
  }

  async #syncClusterTrustBundle(signerName: string, pem: string): Promise<boolean> {
    const desired = clusterTrustBundle(signerName, pem, { [MANAGED_LABEL]: MANAGED_VALUE });
    const name = desired.metadata.name;
    const bundlePath = resourcePath({
      group: TRUST_BUNDLE_GROUP,
      version: TRUST_BUNDLE_VERSION,
      plural: TRUST_BUNDLE_PLURAL,
      name,
    });
    const current = await this.#client.get(bundlePath).catch((error) => {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }) as { metadata?: { labels?: Record<string, string> }; spec?: unknown } | undefined;
    if (
      current !== undefined &&
      current.metadata?.labels?.[MANAGED_LABEL] === MANAGED_VALUE &&
      canonical(current.spec) === canonical(desired.spec)
    ) return false;
    await this.#client.apply(bundlePath, desired, { fieldManager: FIELD_MANAGER, force: true });
    this.#options.onWrite?.("cluster-trust-bundle");
    this.#log.info(current ? "ClusterTrustBundle updated" : "ClusterTrustBundle created", {
      clusterTrustBundle: name,
      signerName,
      roots: countRoots(pem),
    });
    return true;
  }

  #guard(what: string, fields: Record<string, unknown>, work: () => Promise<unknown>): void {
    work().catch((error) =>
      this.#log.error(`${what} failed`, {
        ...fields,
        error: error instanceof Error ? error.message : String(error),
      })
    );
  }

  /**
   * Starts the namespace informer (its initial list is the full pass) and the bundle watch;
   * resolves once both have listed.
   */
  async start(): Promise<void> {
    const namespaces = new Informer<V1Namespace>(this.#client, "/api/v1/namespaces");
    const onNamespace = (ns: V1Namespace) => {
      const name = ns.metadata?.name;
      if (!name || ns.status?.phase === "Terminating" || ns.metadata?.deletionTimestamp) return;
      this.#guard("ensure CAProviderClass", { namespace: name }, () => this.ensureClass(name));
    };
    namespaces.on("add", onNamespace);
    this.#watchErrors(namespaces, "namespaces");

    const cmRef = this.#configMap;
    // Watched by name: the Role grants the ConfigMap by resourceNames, not the namespace's.
    const byName = `metadata.name=${cmRef.name}`;
    const bundle = new Informer<V1ConfigMap>(
      this.#client,
      `/api/v1/namespaces/${cmRef.namespace}/configmaps`,
      { fieldSelector: byName },
    );
    const onConfigMap = (cm: V1ConfigMap) => {
      if (cm.metadata?.name !== cmRef.name) return;
      this.#guard("sync SPIRE bundle", {}, () => this.syncBundle(cm));
    };
    bundle.on("add", onConfigMap);
    bundle.on("update", onConfigMap);
    this.#watchErrors(bundle, "bundle ConfigMap");

    this.#informers.push(namespaces, bundle);
    await Promise.all([namespaces.start(), bundle.start()]);
    // The periodic pass drops roots that expired since the last change and brings back a
    // class someone deleted (namespace events alone would not).
    this.#timer = setInterval(() => {
      this.#guard("resync SPIRE bundle", {}, () => this.syncBundle());
      for (const ns of namespaces.list()) onNamespace(ns);
    }, this.#options.resyncMs ?? 10 * 60_000);
  }

  #watchErrors(informer: Watching, what: string): void {
    informer.on("error", (error: unknown) => {
      if (this.#stopped) return;
      this.#log.warn(`watch on ${what} ended; restarting`, {
        error: error instanceof Error ? error.message : String(error),
      });
      setTimeout(() => {
        if (!this.#stopped) informer.start().catch(() => {});
      }, 1000);
    });
  }

  /** Stops the watches and the resync timer. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await Promise.all(this.#informers.map((informer) => informer.stop()));
  }
}
