/**
 * The status of every CAProviderClass in the cluster: whether its refs resolve to CA
 * certificates the CSI driver would put into a trust store, which object and key each ref read,
 * how many certificates, their SHA-256 fingerprints and the earliest NotAfter.
 *
 * - Classes are listed and watched cluster-wide; the Secrets and ConfigMaps they reference are
 *   watched one by one (`fieldSelector=metadata.name=<name>`, the driver's {@link ObjectWatcher}),
 *   so the webhook needs no namespace-wide or cluster-wide read of Secrets. ClusterTrustBundle
 *   refs are watched the same way: by name, or as the selection of their signer
 *   (`fieldSelector=spec.signerName=<signer>` and the ref's label selector, {@link bundleWatch}).
 *   A cert-manager `Issuer` or `ClusterIssuer` ref is watched by name, and so is the Secret its
 *   `spec.ca.secretName` names (in the Issuer's namespace, or in the cluster resource namespace,
 *   `--cluster-resource-namespace`, for a ClusterIssuer): a change of either is picked up; a
 *   non-CA issuer is `Ready=False` (`InvalidRef`) with a message naming the issuer and its type.
 *   A source change reaches the status within one watch event and one patch.
 * - Certificates are counted with the driver's own admission rules (the trust-store engine's
 *   {@link buildTrustSet}: strict PEM, dedupe by SHA-256 of the DER, expired, not-yet-valid,
 *   non-CA and intermediate certificates dropped), and keyless refs pick their key with the
 *   driver's {@link readRefText}. Every dropped certificate is listed in `droppedCertificates`
 *   (at most {@link MAX_DROPPED_ENTRIES}, reason, subject, SHA-256, source) with their number in
 *   `droppedCount`, and the `Ready` message says how many were dropped; `Ready` stays `True`
 *   while a usable CA is left.
 * - Status is written through the `status` subresource with server-side apply (field manager
 *   {@link STATUS_FIELD_MANAGER}, forced: this program owns these fields).
 *
 * No leader election is needed for the two webhook replicas: the status is a pure function of
 * the class, its sources and the time (which only decides what has expired); every write is
 * compare-before-write against the stored status; a replica about to change the stored status
 * first re-reads every source of the class from the API server (a consistent read), so a replica
 * whose watch lags behind the one that wrote agrees once it has read, instead of writing its older
 * view back; both replicas apply under the same field manager, so their applies never conflict;
 * and `lastTransitionTime` — the one field that depends on when a replica noticed a change — is
 * kept from the stored condition whenever the condition's status is unchanged. After a change the
 * replicas write at most once each and then agree on the stored value; a Lease would only add a
 * failover delay. (Clocks that differ by δ can disagree for δ about a certificate that expires
 * at that moment.)
 *
 * @module
 */

import {
  CLASS_GROUP,
  CLASS_PLURAL,
  CLASS_VERSION,
  type ClassRef,
  DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
  isIssuerRef,
  isSourceRef,
  type IssuerKind,
  issuerNotServedMessage,
  type IssuerRef,
  issuerRefName,
  issuerSecretRef,
  isTrustBundleRef,
  type KeyOrigin,
  type ObjectName,
  parseClassRefs,
  readRefText,
  readTrustBundles,
  refObjectName,
  type SourceKind,
  type SourceRef,
  TRUST_BUNDLE_KIND,
  TRUST_BUNDLE_SIGNER_FIELD,
  type TrustBundleRef,
  trustBundleRefName,
} from "../api/mod.ts";
import { SourceError } from "../api/mod.ts";
import { Backoff, type Logger, SILENT_LOGGER } from "../cli/mod.ts";
import {
  type KubeClient,
  objectKey,
  ObjectWatcher,
  resourcePath,
  type WatchedObject,
} from "../kube/mod.ts";
import {
  buildTrustSet,
  type DroppedCertificate,
  type DropReason,
  EmptyTrustSetError,
  PemError,
  type PemSource,
} from "../trust_store/mod.ts";
import type { Registry } from "../prometheus/mod.ts";
import { type Feed, informerFeed } from "./informer_feed.ts";

/** Type of the condition this module writes. */
export const READY = "Ready";
/** Field manager of the status writes (shared by every replica). */
export const STATUS_FIELD_MANAGER = "spire-cacerts-webhook-status";
/** ClusterRole a namespace binds (RoleBinding) to let the webhook read its Secrets and ConfigMaps. */
export const SOURCE_READER_ROLE = "spire-cacerts-source-reader";
/** The webhook's ServiceAccount, named in the RoleBinding command of a `Forbidden` message. */
export const DEFAULT_SERVICE_ACCOUNT: ObjectName = {
  namespace: "spire-cacerts",
  name: "spire-cacerts-webhook",
};

/** Reason of the `Ready` condition (CamelCase, as Kubernetes conditions use). */
export type ReadyReason =
  /** every ref read, at least one usable CA */
  | "Resolved"
  /** spec.refs is missing, a ref is malformed, or an issuer is not a CA issuer */
  | "InvalidRef"
  /**
   * a referenced Secret, ConfigMap, ClusterTrustBundle, Issuer or ClusterIssuer (or an issuer's
   * Secret) does not exist, or no ClusterTrustBundle has the ref's signer (and labels)
   */
  | "SourceNotFound"
  /** reading a referenced object failed for another reason than permissions */
  | "SourceUnreadable"
  /** the object lacks the ref's key (or both keyless keys) */
  | "KeyNotFound"
  /** a key holds something other than clean PEM certificates */
  | "InvalidPEM"
  /** no certificate is left after the driver's filters (expired, not a CA, ...) */
  | "NoUsableCA"
  /** the webhook may not read a referenced object (no RoleBinding in its namespace) */
  | "Forbidden";

/** The `Ready` condition. */
export interface ReadyCondition {
  /** Always {@link READY}. */
  type: typeof READY;
  /** `"True"` when the driver would render this class. */
  status: "True" | "False";
  /** Why. */
  reason: ReadyReason;
  /** What was read, or what is wrong naming the object, key and fix. Never key material. */
  message: string;
  /** When `status` last changed (RFC 3339, seconds). */
  lastTransitionTime: string;
  /** The class generation this condition describes. */
  observedGeneration: number;
}

/** One ref as it was resolved. */
export interface ResolvedRef {
  /** Secret, ConfigMap, ClusterTrustBundle, Issuer or ClusterIssuer. */
  kind: SourceKind | typeof TRUST_BUNDLE_KIND | IssuerKind;
  /**
   * Namespace (the class's when the ref names none); absent for a ClusterTrustBundle and a
   * ClusterIssuer.
   */
  namespace?: string;
  /** Name; absent for a ClusterTrustBundle ref by signer. */
  name?: string;
  /** The signer of a ClusterTrustBundle ref by signer. */
  signerName?: string;
  /** The label selector of a ClusterTrustBundle ref by signer, as a list selector. */
  labelSelector?: string;
  /** The ClusterTrustBundles read for this ref, in name order. */
  bundles?: string[];
  /** The Secret an Issuer or ClusterIssuer ref read (its `spec.ca.secretName`), once known. */
  secret?: ObjectName;
  /** The key read (absent when a keyless ref could not be resolved). */
  key?: string;
  /** `Ref` (named in the ref), `Default` (keyless: ca.crt) or `Fallback` (keyless: tls.crt). */
  keySource?: KeyOrigin;
  /** CA certificates this ref contributes on its own (absent when it could not be read). */
  certificates?: number;
}

/** At most this many {@link ClassStatus.droppedCertificates} entries are stored. */
export const MAX_DROPPED_ENTRIES = 20;
/** Longest `subject`, `source` and `detail` of a dropped entry; longer ones end in `…`. */
export const MAX_DROPPED_TEXT = 256;

/** A certificate a class's refs hold that the driver leaves out of the store. */
export interface DroppedCertificateStatus {
  /** The filter that dropped it: `expired`, `not_yet_valid`, `non_ca`, `intermediate`, `openssl_unloadable`. */
  reason: DropReason;
  /** Its subject (at most {@link MAX_DROPPED_TEXT} characters). */
  subject: string;
  /** Lower-case hex SHA-256 of its DER. */
  sha256: string;
  /** The object and key it was read from (at most {@link MAX_DROPPED_TEXT} characters). */
  source: string;
  /** The value that failed (e.g. `notAfter 2025-01-01T00:00:00.000Z`), when there is one. */
  detail?: string;
}

/** The status fields this module owns. */
export interface ClassStatus {
  /** `metadata.generation` of the class described. */
  observedGeneration: number;
  /** Number of CA certificates the driver would render from this class (0 when not ready). */
  certificates: number;
  /** Lower-case hex SHA-256 of each certificate's DER, in the driver's order (when ready). */
  fingerprints?: string[];
  /** Earliest NotAfter of those certificates (RFC 3339, when ready). */
  earliestNotAfter?: string;
  /** The refs in spec order (absent when spec.refs cannot be parsed). */
  resolvedRefs?: ResolvedRef[];
  /**
   * Number of distinct certificates the refs hold that the driver's filters drop (absent when
   * none, or when a ref could not be read).
   */
  droppedCount?: number;
  /** The first {@link MAX_DROPPED_ENTRIES} of those, in ref order (absent when none). */
  droppedCertificates?: DroppedCertificateStatus[];
  /** The `Ready` condition. */
  conditions: [ReadyCondition];
}

/** A CAProviderClass as read from the API server. */
export interface ClassObject {
  /** Object metadata. */
  metadata?: {
    name?: string;
    namespace?: string;
    generation?: number;
    resourceVersion?: string;
  };
  /** The refs. */
  spec?: unknown;
  /** The stored status (anyone's fields). */
  status?: unknown;
}

/** What is known about a referenced object. */
export interface SourceState {
  /** The object, or null when it does not exist (or was never read). */
  object: Record<string, unknown> | null;
  /** The last read's error (e.g. a `KubeApiError` with code 403), if it failed. */
  error?: unknown;
}

/** Looks up the current state of a referenced object. */
export type SourceLookup = (object: WatchedObject) => SourceState;

/** Options of {@link computeClassStatus}. */
export interface ComputeStatusOptions {
  /** The time: decides what has expired and stamps transitions. */
  now: Date;
  /** The webhook's ServiceAccount (default {@link DEFAULT_SERVICE_ACCOUNT}). */
  serviceAccount?: ObjectName;
  /** The ClusterRole to bind for reads (default {@link SOURCE_READER_ROLE}). */
  sourceReaderRole?: string;
  /**
   * cert-manager's cluster resource namespace, where a ClusterIssuer's Secret is read (default
   * `cert-manager`).
   */
  clusterResourceNamespace?: string;
}

/** The status computed for a class, and when it has to be computed again at the latest. */
export interface ComputedStatus {
  /** The status to store. */
  status: ClassStatus;
  /** The earliest NotAfter among the certificates counted: the status changes then. */
  recheckAt?: Date;
}

/** RFC 3339 in UTC with whole seconds, as `metav1.Time` serializes. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** `name` or `namespace/name` of a class. */
function classLabel(name: ObjectName): string {
  return `CAProviderClass ${name.namespace}/${name.name}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The stored `Ready` condition of a status, if any. */
export function storedReadyCondition(status: unknown): Record<string, unknown> | undefined {
  const conditions = isRecord(status) ? status.conditions : undefined;
  if (!Array.isArray(conditions)) return undefined;
  return conditions.find((c) => isRecord(c) && c.type === READY) as
    | Record<string, unknown>
    | undefined;
}

/**
 * The condition to store: `lastTransitionTime` is kept from the stored `Ready` condition when its
 * status is the same, and is `now` otherwise (first write or a transition).
 */
export function nextReadyCondition(
  stored: unknown,
  desired: Omit<ReadyCondition, "lastTransitionTime">,
  now: Date,
): ReadyCondition {
  const previous = storedReadyCondition(stored);
  const keep = previous?.status === desired.status &&
    typeof previous.lastTransitionTime === "string" && previous.lastTransitionTime !== "";
  return {
    ...desired,
    lastTransitionTime: keep ? previous.lastTransitionTime as string : rfc3339(now),
  };
}

/** The HTTP status of an API error, if it has one. */
function httpCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === "number" ? code : undefined;
}

/**
 * The message of a `Forbidden` ref: names the object, the namespace, and the exact command that
 * grants the webhook's ServiceAccount reads there.
 */
export function forbiddenMessage(
  ref: ObjectName & { kind: SourceKind },
  serviceAccount: ObjectName = DEFAULT_SERVICE_ACCOUNT,
  role: string = SOURCE_READER_ROLE,
): string {
  const sa = `${serviceAccount.namespace}:${serviceAccount.name}`;
  return `cannot read ${ref.kind} ${ref.namespace}/${ref.name}: ServiceAccount ` +
    `${serviceAccount.namespace}/${serviceAccount.name} may not read Secrets and ConfigMaps in ` +
    `namespace "${ref.namespace}" (no RoleBinding to ClusterRole ${role} there); grant it with ` +
    `\`kubectl create rolebinding ${role} --clusterrole=${role} --serviceaccount=${sa} ` +
    `-n ${ref.namespace}\``;
}

/**
 * The message of a `Forbidden` ClusterTrustBundle ref: names the bundle (or signer) and the rule
 * the webhook's ClusterRole needs.
 */
export function forbiddenBundleMessage(
  ref: TrustBundleRef,
  serviceAccount: ObjectName = DEFAULT_SERVICE_ACCOUNT,
): string {
  return `cannot read ${trustBundleRefName(ref)}: ServiceAccount ` +
    `${serviceAccount.namespace}/${serviceAccount.name} may not get, list and watch ` +
    `clustertrustbundles (certificates.k8s.io); grant them in its ClusterRole ` +
    `(manifests/webhook/rbac.yaml, ClusterRole spire-cacerts-webhook)`;
}

/**
 * What the status controller watches for a ClusterTrustBundle ref: the bundle by name, or the
 * selection of every bundle with the ref's signer (and labels).
 */
export function bundleWatch(ref: TrustBundleRef): WatchedObject {
  if (ref.name !== undefined) return { kind: TRUST_BUNDLE_KIND, namespace: "", name: ref.name };
  return {
    kind: TRUST_BUNDLE_KIND,
    namespace: "",
    name: "",
    selector: {
      fieldSelector: `${TRUST_BUNDLE_SIGNER_FIELD}=${ref.signerName}`,
      ...(ref.labelSelector === undefined ? {} : { labelSelector: ref.labelSelector }),
    },
  };
}

/**
 * The message of a `Forbidden` Issuer or ClusterIssuer ref (its list refused): names the issuer
 * and the rule the webhook's ClusterRole needs.
 */
export function forbiddenIssuerMessage(
  ref: IssuerRef,
  serviceAccount: ObjectName = DEFAULT_SERVICE_ACCOUNT,
): string {
  return `cannot read ${issuerRefName(ref)}: ServiceAccount ` +
    `${serviceAccount.namespace}/${serviceAccount.name} may not get, list and watch issuers ` +
    `and clusterissuers (cert-manager.io); grant them in its ClusterRole ` +
    `(manifests/webhook/rbac.yaml, ClusterRole spire-cacerts-webhook)`;
}

/** What the status controller watches for an Issuer or ClusterIssuer ref: the issuer by name. */
export function issuerWatch(ref: IssuerRef): WatchedObject {
  return { kind: ref.kind, namespace: ref.namespace, name: ref.name };
}

/** What a class's ref is watched as (an issuer's Secret comes on top, see {@link classDeps}). */
function watchOf(ref: ClassRef): WatchedObject {
  if (isSourceRef(ref)) return { kind: ref.kind, namespace: ref.namespace, name: ref.name };
  return isIssuerRef(ref) ? issuerWatch(ref) : bundleWatch(ref);
}

/**
 * Every object a class's refs depend on, without duplicates: each ref's own watch and, for an
 * Issuer or ClusterIssuer whose current state names a CA Secret, that Secret too (known only once
 * the issuer has been read: the caller watches the issuers, then asks again).
 *
 * @param refs the class's parsed refs
 * @param lookup the current state of watched objects
 * @param clusterResourceNamespace where a ClusterIssuer's Secret lives
 */
export function classDeps(
  refs: readonly ClassRef[],
  lookup: SourceLookup,
  clusterResourceNamespace: string = DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
): WatchedObject[] {
  const deps: WatchedObject[] = [];
  const seen = new Set<string>();
  const add = (d: WatchedObject) => {
    if (!seen.has(objectKey(d))) {
      seen.add(objectKey(d));
      deps.push(d);
    }
  };
  for (const ref of refs) {
    const own = watchOf(ref);
    add(own);
    if (!isIssuerRef(ref)) continue;
    const state = lookup(own);
    if (state.object === null) continue;
    try {
      const secret = issuerSecretRef(ref, state.object, clusterResourceNamespace);
      add({ kind: "Secret", namespace: secret.namespace, name: secret.name });
    } catch (error) {
      if (!(error instanceof SourceError)) throw error;
    }
  }
  return deps;
}

/** The bundles a watched ClusterTrustBundle ref currently selects. */
function bundlesOf(ref: TrustBundleRef, object: Record<string, unknown> | null) {
  if (object === null) return [];
  if (ref.name !== undefined) return [object];
  const items = object.items;
  return Array.isArray(items) ? items.filter(isRecord) : [];
}

function bundleName(bundle: Record<string, unknown>): string {
  const metadata = isRecord(bundle.metadata) ? bundle.metadata : {};
  return typeof metadata.name === "string" ? metadata.name : "";
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function clipTo(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The bounded status fields of the dropped certificates (none when nothing was dropped). */
function droppedFields(
  dropped: readonly DroppedCertificate[],
): Pick<ClassStatus, "droppedCount" | "droppedCertificates"> {
  if (dropped.length === 0) return {};
  return {
    droppedCount: dropped.length,
    droppedCertificates: dropped.slice(0, MAX_DROPPED_ENTRIES).map((d) => ({
      reason: d.reason,
      subject: clipTo(d.subject, MAX_DROPPED_TEXT),
      sha256: d.sha256,
      source: clipTo(d.source, MAX_DROPPED_TEXT),
      ...(d.detail === undefined ? {} : { detail: clipTo(d.detail, MAX_DROPPED_TEXT) }),
    })),
  };
}

/** `; 2 certificates dropped (1 expired, 1 non_ca; see status.droppedCertificates)`, or "". */
function droppedNote(dropped: readonly DroppedCertificate[]): string {
  if (dropped.length === 0) return "";
  const byReason = new Map<DropReason, number>();
  for (const d of dropped) byReason.set(d.reason, (byReason.get(d.reason) ?? 0) + 1);
  const counts = [...byReason].map(([reason, n]) => `${n} ${reason}`).join(", ");
  return `; ${plural(dropped.length, "certificate")} dropped (${counts}; see ` +
    `status.droppedCertificates)`;
}

/** The earliest future notBefore of a not-yet-valid dropped certificate: it is kept from then. */
function validFrom(dropped: readonly DroppedCertificate[], now: Date): Date | undefined {
  let first: Date | undefined;
  for (const d of dropped) {
    if (d.reason !== "not_yet_valid" || d.notBefore === undefined) continue;
    if (d.notBefore.getTime() <= now.getTime()) continue;
    if (first === undefined || d.notBefore.getTime() < first.getTime()) first = d.notBefore;
  }
  return first;
}

function earlier(a: Date | undefined, b: Date | undefined): Date | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a.getTime() <= b.getTime() ? a : b;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

interface Problem {
  reason: ReadyReason;
  message: string;
}

const MAX_MESSAGE = 8192;

function clip(text: string): string {
  return text.length <= MAX_MESSAGE ? text : `${text.slice(0, MAX_MESSAGE - 1)}…`;
}

/** How the message names what a resolved ref read. */
function describeRead(ref: ClassRef, entry: ResolvedRef): string {
  if (isIssuerRef(ref)) {
    return `${issuerRefName(ref)} (Secret ${entry.secret?.namespace}/${entry.secret?.name} ` +
      `${describeKey(entry.key!, entry.keySource!)})`;
  }
  if (!isSourceRef(ref)) {
    return ref.name !== undefined
      ? trustBundleRefName(ref)
      : `${trustBundleRefName(ref)} (${entry.bundles?.join(", ") ?? ""})`;
  }
  return `${refObjectName(ref)} ${describeKey(entry.key!, entry.keySource!)}`;
}

function describeKey(key: string, origin: KeyOrigin): string {
  if (origin === "Fallback") return `key ${key} (ref without key; the object has no ca.crt)`;
  if (origin === "Default") return `key ${key} (ref without key)`;
  return `key ${key}`;
}

/**
 * Computes a class's status from its spec and the current state of the objects it references,
 * with the driver's rules: the key each ref reads ({@link readRefText}), and the certificates
 * kept ({@link buildTrustSet} with the driver's default filters, no base roots).
 *
 * @param cls the class as stored (its `status` supplies the previous `lastTransitionTime`)
 * @param lookup the state of each referenced object
 * @param options time, ServiceAccount and ClusterRole for messages
 */
export async function computeClassStatus(
  cls: ClassObject,
  lookup: SourceLookup,
  options: ComputeStatusOptions,
): Promise<ComputedStatus> {
  const { now } = options;
  const name = { namespace: cls.metadata?.namespace ?? "", name: cls.metadata?.name ?? "" };
  const label = classLabel(name);
  const generation = cls.metadata?.generation ?? 0;
  const finish = (
    ready: boolean,
    reason: ReadyReason,
    message: string,
    fields: Omit<ClassStatus, "observedGeneration" | "conditions">,
  ): ClassStatus => ({
    observedGeneration: generation,
    ...fields,
    conditions: [
      nextReadyCondition(cls.status, {
        type: READY,
        status: ready ? "True" : "False",
        reason,
        message: clip(message),
        observedGeneration: generation,
      }, now),
    ],
  });

  let refs: ClassRef[];
  try {
    refs = parseClassRefs(cls, name);
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    return { status: finish(false, "InvalidRef", error.message, { certificates: 0 }) };
  }

  const resolved: ResolvedRef[] = [];
  const problems: Problem[] = [];
  const sources: PemSource[] = [];
  const notes: string[] = [];
  const clusterResourceNamespace = options.clusterResourceNamespace ??
    DEFAULT_CLUSTER_RESOURCE_NAMESPACE;
  /**
   * Reads a Secret or ConfigMap ref (or the Secret an issuer stands for) into `entry`: its key
   * and certificates, or a problem.
   */
  const readSource = async (
    ref: SourceRef,
    entry: ResolvedRef,
    from: string,
    note = "",
  ): Promise<void> => {
    const state = lookup({ kind: ref.kind, namespace: ref.namespace, name: ref.name });
    const code = httpCode(state.error);
    if (code === 403) {
      problems.push({
        reason: "Forbidden",
        message: forbiddenMessage(ref, options.serviceAccount, options.sourceReaderRole) + note,
      });
      return;
    }
    if (state.error !== undefined && state.object === null) {
      problems.push({
        reason: "SourceUnreadable",
        message: `cannot read ${refObjectName(ref)} (from ${from}): ` +
          `${code !== undefined ? `HTTP ${code}` : errorText(state.error)}; retrying`,
      });
      return;
    }
    let read;
    try {
      read = readRefText(ref, state.object, from);
    } catch (error) {
      if (!(error instanceof SourceError)) throw error;
      const reason: ReadyReason = error.reason === "SourceNotFound"
        ? "SourceNotFound"
        : error.reason === "KeyNotFound"
        ? "KeyNotFound"
        : "InvalidPEM";
      problems.push({ reason, message: error.message });
      return;
    }
    entry.key = read.key;
    entry.keySource = read.origin;
    const source = { name: `${refObjectName(ref)} key ${read.key}`, text: read.text };
    const described = `${refObjectName(ref)} ${describeKey(read.key, read.origin)}`;
    try {
      entry.certificates = (await buildTrustSet([source], { now })).customCount;
    } catch (error) {
      if (error instanceof PemError) {
        entry.certificates = 0;
        problems.push({ reason: "InvalidPEM", message: `${error.message} (from ${from})` });
        return;
      }
      if (!(error instanceof EmptyTrustSetError)) throw error;
      entry.certificates = 0;
      notes.push(
        `${described} holds no usable CA` +
          (error.warnings.length ? ` (${error.warnings.join("; ")})` : " (no certificate)"),
      );
    }
    sources.push(source);
  };

  for (const ref of refs) {
    if (isTrustBundleRef(ref)) {
      const entry: ResolvedRef = { kind: ref.kind };
      if (ref.name !== undefined) entry.name = ref.name;
      if (ref.signerName !== undefined) entry.signerName = ref.signerName;
      if (ref.labelSelector !== undefined) entry.labelSelector = ref.labelSelector;
      resolved.push(entry);
      const state = lookup(bundleWatch(ref));
      const code = httpCode(state.error);
      if (code === 403) {
        problems.push({
          reason: "Forbidden",
          message: forbiddenBundleMessage(ref, options.serviceAccount),
        });
        continue;
      }
      if (state.error !== undefined && state.object === null) {
        problems.push({
          reason: "SourceUnreadable",
          message: `cannot read ${trustBundleRefName(ref)} (from ${label}): ` +
            `${code !== undefined ? `HTTP ${code}` : errorText(state.error)}; retrying`,
        });
        continue;
      }
      const bundles = bundlesOf(ref, state.object);
      let texts;
      try {
        texts = readTrustBundles(ref, bundles, label);
      } catch (error) {
        if (!(error instanceof SourceError)) throw error;
        problems.push({
          reason: error.reason === "SourceNotFound" ? "SourceNotFound" : "InvalidPEM",
          message: error.message,
        });
        continue;
      }
      entry.bundles = bundles.map(bundleName).sort();
      const refSources = texts.map((t) => ({ name: t.name, text: t.text }));
      try {
        entry.certificates = (await buildTrustSet(refSources, { now })).customCount;
      } catch (error) {
        entry.certificates = 0;
        if (error instanceof PemError) {
          problems.push({ reason: "InvalidPEM", message: `${error.message} (from ${label})` });
          continue;
        }
        if (!(error instanceof EmptyTrustSetError)) throw error;
        notes.push(
          `${describeRead(ref, entry)} holds no usable CA` +
            (error.warnings.length ? ` (${error.warnings.join("; ")})` : " (no certificate)"),
        );
      }
      sources.push(...refSources);
      continue;
    }
    if (isIssuerRef(ref)) {
      const entry: ResolvedRef = { kind: ref.kind, name: ref.name };
      if (ref.namespace !== "") entry.namespace = ref.namespace;
      resolved.push(entry);
      const state = lookup(issuerWatch(ref));
      const code = httpCode(state.error);
      if (code === 403) {
        problems.push({
          reason: "Forbidden",
          message: forbiddenIssuerMessage(ref, options.serviceAccount),
        });
        continue;
      }
      if (code === 404 && state.object === null) {
        problems.push({ reason: "SourceUnreadable", message: issuerNotServedMessage(ref, label) });
        continue;
      }
      if (state.error !== undefined && state.object === null) {
        problems.push({
          reason: "SourceUnreadable",
          message: `cannot read ${issuerRefName(ref)} (from ${label}): ` +
            `${code !== undefined ? `HTTP ${code}` : errorText(state.error)}; retrying`,
        });
        continue;
      }
      let secret: SourceRef;
      try {
        secret = issuerSecretRef(ref, state.object, clusterResourceNamespace, label);
      } catch (error) {
        if (!(error instanceof SourceError)) throw error;
        problems.push({
          reason: error.reason === "SourceNotFound" ? "SourceNotFound" : "InvalidRef",
          message: error.message,
        });
        continue;
      }
      entry.secret = { namespace: secret.namespace, name: secret.name };
      await readSource(
        secret,
        entry,
        `${label} via ${issuerRefName(ref)}`,
        ` (the CA Secret of ${issuerRefName(ref)})`,
      );
      continue;
    }
    const entry: ResolvedRef = { kind: ref.kind, namespace: ref.namespace, name: ref.name };
    if (ref.key !== undefined) entry.key = ref.key;
    resolved.push(entry);
    await readSource(ref, entry, label);
  }

  if (problems.length > 0) {
    return {
      status: finish(false, problems[0].reason, problems.map((p) => p.message).join("; "), {
        certificates: 0,
        resolvedRefs: resolved,
      }),
    };
  }
  let set;
  try {
    set = await buildTrustSet(sources, { now });
  } catch (error) {
    if (!(error instanceof EmptyTrustSetError)) throw error;
    const recheckAt = validFrom(error.dropped, now);
    return {
      status: finish(
        false,
        "NoUsableCA",
        `${label}: no usable CA certificate; ${notes.join("; ")}`,
        {
          certificates: 0,
          resolvedRefs: resolved,
          ...droppedFields(error.dropped),
        },
      ),
      ...(recheckAt === undefined ? {} : { recheckAt }),
    };
  }
  const earliest = set.certificates.reduce(
    (min, c) => c.notAfter.getTime() < min.getTime() ? c.notAfter : min,
    set.certificates[0].notAfter,
  );
  const from = refs.map((ref, i) => describeRead(ref, resolved[i]));
  const message = `${plural(set.customCount, "CA certificate")} from ${from.join(", ")}; ` +
    `earliest NotAfter ${rfc3339(earliest)}` + droppedNote(set.dropped) +
    (notes.length ? `; ${notes.join("; ")}` : "");
  return {
    status: finish(true, "Resolved", message, {
      certificates: set.customCount,
      fingerprints: set.certificates.map((c) => c.sha256),
      earliestNotAfter: rfc3339(earliest),
      resolvedRefs: resolved,
      ...droppedFields(set.dropped),
    }),
    recheckAt: earlier(earliest, validFrom(set.dropped, now)) ?? earliest,
  };
}

/** JSON with object keys sorted and undefined members dropped. */
function canonical(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) =>
      isRecord(v)
        ? Object.fromEntries(
          Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) =>
            a < b ? -1 : a > b ? 1 : 0
          ),
        )
        : v,
  );
}

const OWNED_FIELDS = [
  "observedGeneration",
  "certificates",
  "fingerprints",
  "earliestNotAfter",
  "resolvedRefs",
  "droppedCount",
  "droppedCertificates",
] as const;

/**
 * Whether the stored status differs from the desired one in the fields this module owns (the
 * `Ready` condition among the conditions; other condition types are left to their owners).
 */
export function statusDiffers(stored: unknown, desired: ClassStatus): boolean {
  const current = isRecord(stored) ? stored : {};
  for (const field of OWNED_FIELDS) {
    if (canonical(current[field]) !== canonical(desired[field])) return true;
  }
  return canonical(storedReadyCondition(current)) !== canonical(desired.conditions[0]);
}

/** Delivers CAProviderClass objects as they are added, changed and deleted. */
export type ClassFeed = Feed<ClassObject>;

/** Watches single referenced objects; {@link ObjectWatcher} is the real one. */
export interface SourceFeed {
  /** Starts (or shares) a watch and resolves once the object's state is known. */
  acquire(object: WatchedObject): Promise<void>;
  /** Drops one use of a watch. */
  release(object: WatchedObject): void;
  /** The object, null when it does not exist, undefined when not watched. */
  get(object: WatchedObject): Record<string, unknown> | null | undefined;
  /** The last read's error, if it failed. */
  error(object: WatchedObject): unknown;
  /** Reads a watched object now (a consistent read, not a watch event) and stores its state. */
  refresh(object: WatchedObject): Promise<void>;
  /** Stops every watch. */
  stop(): void;
}

/** Writes a class's status. */
export interface StatusWriter {
  /**
   * Stores `status` on the class.
   *
   * @throws {Error} with `code` 404 when the class is gone (ignored by the controller)
   */
  write(cls: ObjectName, status: ClassStatus): Promise<void>;
}

/** Options of {@link ClassStatusController}. */
export interface ClassStatusControllerOptions {
  /** Where classes come from. */
  classes: ClassFeed;
  /** Makes the source watcher, given the callback it must call with a changed object's key. */
  sources: (onChange: (key: string) => void) => SourceFeed;
  /** Where status goes. */
  writer: StatusWriter;
  /** Where events go. */
  log?: Logger;
  /** Clock (default `new Date()`). */
  now?: () => Date;
  /** The webhook's ServiceAccount, for `Forbidden` messages. */
  serviceAccount?: ObjectName;
  /** The ClusterRole to bind, for `Forbidden` messages. */
  sourceReaderRole?: string;
  /** Where a ClusterIssuer's Secret is read (default `cert-manager`). */
  clusterResourceNamespace?: string;
  /** Registry for the status metrics. */
  metrics?: Registry;
  /** Period of a full re-check of every class in ms (default 5 min). */
  resyncMs?: number;
}

interface Tracked {
  key: string;
  name: ObjectName;
  object: ClassObject;
  deps: WatchedObject[];
  queue: Promise<void>;
  pending: boolean;
  removed: boolean;
  timer?: ReturnType<typeof setTimeout>;
  /** Delay of the retry after a failed write: 1 s doubling to 30 s, reset by a success. */
  retry: Backoff;
  ready?: boolean;
}

const WRITES = "spire_cacerts_webhook_class_status_writes_total";
const CLASSES = "spire_cacerts_webhook_caproviderclasses";
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function classKey(name: ObjectName): string {
  return `${name.namespace}/${name.name}`;
}

/** Keeps the status of every CAProviderClass current; see the module documentation. */
export class ClassStatusController {
  readonly #opts: ClassStatusControllerOptions;
  readonly #log: Logger;
  readonly #sources: SourceFeed;
  readonly #tracked = new Map<string, Tracked>();
  readonly #byDep = new Map<string, Set<Tracked>>();
  #resync: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  /** Creates the controller; nothing runs until {@link start}. */
  constructor(options: ClassStatusControllerOptions) {
    this.#opts = options;
    this.#log = options.log ?? SILENT_LOGGER;
    this.#sources = options.sources((key) => this.#sourceChanged(key));
    const m = options.metrics;
    if (m) {
      m.define(WRITES, "counter", "CAProviderClass status writes, by result.");
      m.define(CLASSES, "gauge", "CAProviderClasses by Ready status.");
      for (const ready of ["true", "false"]) m.set(CLASSES, 0, { ready });
    }
  }

  /** Starts following classes and their sources; resolves once the initial list is in. */
  async start(): Promise<void> {
    await this.#opts.classes.start({
      upsert: (cls) => this.#upsert(cls),
      remove: (cls) => this.#remove(cls),
    });
    this.#resync = setInterval(() => {
      for (const t of this.#tracked.values()) this.#schedule(t);
    }, this.#opts.resyncMs ?? 5 * 60_000);
  }

  /** Waits until no status computation is queued or running (for tests and shutdown). */
  async idle(): Promise<void> {
    while (true) {
      await Promise.all([...this.#tracked.values()].map((t) => t.queue));
      if ([...this.#tracked.values()].every((t) => !t.pending)) return;
    }
  }

  /** Stops every watch and timer. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#resync !== undefined) clearInterval(this.#resync);
    for (const t of this.#tracked.values()) {
      t.removed = true;
      if (t.timer !== undefined) clearTimeout(t.timer);
    }
    await this.#opts.classes.stop();
    await Promise.allSettled([...this.#tracked.values()].map((t) => t.queue));
    this.#sources.stop();
    this.#tracked.clear();
    this.#byDep.clear();
  }

  #upsert(cls: ClassObject): void {
    const name = { namespace: cls.metadata?.namespace ?? "", name: cls.metadata?.name ?? "" };
    if (!name.namespace || !name.name || this.#stopped) return;
    const key = classKey(name);
    let t = this.#tracked.get(key);
    if (!t) {
      t = {
        key,
        name,
        object: cls,
        deps: [],
        queue: Promise.resolve(),
        pending: false,
        removed: false,
        retry: new Backoff({ initialMs: 1_000, maxMs: 30_000 }),
      };
      this.#tracked.set(key, t);
    } else {
      t.object = cls;
    }
    this.#schedule(t);
  }

  #remove(cls: ClassObject): void {
    const key = classKey({
      namespace: cls.metadata?.namespace ?? "",
      name: cls.metadata?.name ?? "",
    });
    const t = this.#tracked.get(key);
    if (!t) return;
    this.#tracked.delete(key);
    t.removed = true;
    if (t.timer !== undefined) clearTimeout(t.timer);
    t.queue = t.queue.then(() => this.#swapDeps(t, []));
    this.#countReady();
  }

  #sourceChanged(key: string): void {
    for (const t of this.#byDep.get(key) ?? []) this.#schedule(t);
  }

  #schedule(t: Tracked): void {
    if (t.pending || t.removed || this.#stopped) return;
    t.pending = true;
    t.queue = t.queue.then(async () => {
      t.pending = false;
      if (t.removed || this.#stopped) return;
      try {
        await this.#reconcile(t);
        t.retry.reset();
      } catch (error) {
        const delay = t.retry.next();
        this.#log.warn("CAProviderClass status not written; retrying", {
          class: t.key,
          retryInMs: delay,
          error: errorText(error),
        });
        this.#opts.metrics?.inc(WRITES, { result: "error" });
        this.#timer(t, delay);
      }
    });
  }

  #timer(t: Tracked, ms: number): void {
    if (t.timer !== undefined) clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      t.timer = undefined;
      this.#schedule(t);
    }, Math.max(0, Math.min(ms, MAX_TIMER_MS)));
  }

  async #swapDeps(t: Tracked, deps: WatchedObject[]): Promise<void> {
    await Promise.all(deps.map((d) => this.#sources.acquire(d)));
    for (const d of deps) {
      const key = objectKey(d);
      let set = this.#byDep.get(key);
      if (!set) this.#byDep.set(key, set = new Set());
      set.add(t);
    }
    const keep = new Set(deps.map(objectKey));
    for (const d of t.deps) {
      const key = objectKey(d);
      if (!keep.has(key)) {
        this.#byDep.get(key)?.delete(t);
        if (this.#byDep.get(key)?.size === 0) this.#byDep.delete(key);
      }
      this.#sources.release(d);
    }
    t.deps = deps;
  }

  /**
   * Follows every object the refs depend on: their own watches, then (once the issuers are read)
   * the Secrets the issuers name; again until the set is stable (an issuer read fresh may name
   * another Secret).
   */
  async #follow(t: Tracked, refs: readonly ClassRef[]): Promise<WatchedObject[]> {
    const lookup: SourceLookup = (o) => ({
      object: this.#sources.get(o) ?? null,
      error: this.#sources.error(o),
    });
    const same = (a: WatchedObject[], b: WatchedObject[]) =>
      a.length === b.length && a.every((d, i) => objectKey(d) === objectKey(b[i]));
    let deps = classDeps(refs, lookup, this.#opts.clusterResourceNamespace);
    for (let round = 0; round < 4; round++) {
      if (round > 0 && same(deps, t.deps)) break;
      await this.#swapDeps(t, deps);
      if (t.removed || this.#stopped) break;
      deps = classDeps(refs, lookup, this.#opts.clusterResourceNamespace);
    }
    return t.deps;
  }

  async #reconcile(t: Tracked): Promise<void> {
    let cls = t.object;
    let refs: ClassRef[];
    try {
      refs = parseClassRefs(cls, t.name);
    } catch {
      refs = [];
    }
    let deps = await this.#follow(t, refs);
    if (t.removed || this.#stopped) return;
    const compute = () => {
      const now = this.#opts.now?.() ?? new Date();
      return computeClassStatus(cls, (o) => ({
        object: this.#sources.get(o) ?? null,
        error: this.#sources.error(o),
      }), {
        now,
        serviceAccount: this.#opts.serviceAccount,
        sourceReaderRole: this.#opts.sourceReaderRole,
        clusterResourceNamespace: this.#opts.clusterResourceNamespace,
      }).then((computed) => ({ ...computed, now }));
    };
    let computed = await compute();
    if (statusDiffers(cls.status, computed.status)) {
      // About to change the stored status, which the other replica may have written from a newer
      // view: base the change on a fresh read of every source, not on watch events (or a retry
      // backoff) that may lag behind it. A replica that only lagged then agrees and writes nothing.
      await Promise.all(deps.map((d) => this.#sources.refresh(d)));
      if (t.removed || this.#stopped) return;
      // A fresh issuer may name another Secret: follow it (and read it) before computing.
      const before = new Set(deps.map(objectKey));
      deps = await this.#follow(t, refs);
      if (t.removed || this.#stopped) return;
      await Promise.all(
        deps.filter((d) => !before.has(objectKey(d))).map((d) => this.#sources.refresh(d)),
      );
      // The stored status may have moved meanwhile (the informer delivers it).
      if (canonical(t.object.spec) === canonical(cls.spec)) cls = t.object;
      computed = await compute();
    }
    const { status, recheckAt, now } = computed;
    t.ready = status.conditions[0].status === "True";
    this.#countReady();
    if (recheckAt) this.#timer(t, recheckAt.getTime() - now.getTime() + 1000);
    else if (t.timer !== undefined) {
      clearTimeout(t.timer);
      t.timer = undefined;
    }
    if (!statusDiffers(cls.status, status)) return;
    try {
      await this.#opts.writer.write(t.name, status);
    } catch (error) {
      if (httpCode(error) === 404) return;
      throw error;
    }
    this.#opts.metrics?.inc(WRITES, { result: "ok" });
    // Compare the next computation with what was just stored, not with the older copy.
    if (t.object === cls) t.object = { ...cls, status };
    const condition = status.conditions[0];
    this.#log.info("CAProviderClass status written", {
      class: t.key,
      ready: condition.status,
      reason: condition.reason,
      certificates: status.certificates,
    });
  }

  #countReady(): void {
    const m = this.#opts.metrics;
    if (!m) return;
    let ready = 0;
    let notReady = 0;
    for (const t of this.#tracked.values()) {
      if (t.ready === true) ready++;
      else if (t.ready === false) notReady++;
    }
    m.set(CLASSES, ready, { ready: "true" });
    m.set(CLASSES, notReady, { ready: "false" });
  }
}

/** Options of {@link startClassStatus}. */
export interface StartClassStatusOptions {
  /** Cluster access (the webhook's ServiceAccount in the cluster). */
  client: KubeClient;
  /** Where events go. */
  log: Logger;
  /** Registry for the status metrics. */
  metrics?: Registry;
  /** The webhook's ServiceAccount, for `Forbidden` messages. */
  serviceAccount?: ObjectName;
  /** Longest wait between retries of an unreadable source in ms (default 2000). */
  sourceRetryMs?: number;
  /** Where a ClusterIssuer's Secret is read (default `cert-manager`). */
  clusterResourceNamespace?: string;
}

/**
 * Lists and watches every CAProviderClass in the cluster. A failed list or watch (e.g. the CRD not
 * served yet) is retried with a doubling delay up to 30 s, logged once until a list succeeds.
 */
export function classInformerFeed(client: KubeClient, log: Logger): ClassFeed {
  return informerFeed<ClassObject>(client, "CAProviderClass", [{
    path: resourcePath({ group: CLASS_GROUP, version: CLASS_VERSION, plural: CLASS_PLURAL }),
  }], log);
}

/** Writes status with server-side apply on the `status` subresource. */
export function applyStatusWriter(client: KubeClient): StatusWriter {
  return {
    async write(cls, status) {
      await client.apply(
        resourcePath({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace: cls.namespace,
          plural: CLASS_PLURAL,
          name: cls.name,
          subresource: "status",
        }),
        {
          apiVersion: `${CLASS_GROUP}/${CLASS_VERSION}`,
          kind: "CAProviderClass",
          metadata: { namespace: cls.namespace, name: cls.name },
          status,
        },
        { fieldManager: STATUS_FIELD_MANAGER, force: true },
      );
    },
  };
}

/**
 * Starts the status controller on a cluster: classes through an informer, sources through the
 * driver's {@link ObjectWatcher}, writes through {@link applyStatusWriter}.
 */
export async function startClassStatus(
  options: StartClassStatusOptions,
): Promise<ClassStatusController> {
  const controller = new ClassStatusController({
    classes: classInformerFeed(options.client, options.log),
    sources: (onChange) =>
      new ObjectWatcher({
        client: options.client,
        logger: options.log,
        onChange,
        maxRetryMs: options.sourceRetryMs ?? 2000,
      }),
    writer: applyStatusWriter(options.client),
    log: options.log,
    metrics: options.metrics,
    serviceAccount: options.serviceAccount,
    clusterResourceNamespace: options.clusterResourceNamespace,
  });
  await controller.start();
  return controller;
}
