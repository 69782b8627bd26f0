/**
 * Parsing of the `caProviderClasses` volume attribute, and CAProviderClass objects
 * (`cacerts.csi.cert-manager.io/v1alpha1`, the kubeops/csi-driver-cacerts schema:
 * `spec.refs[]` of `{apiGroup, kind, namespace, name, key}`, cert-manager `Issuer` and
 * `ClusterIssuer` refs, `issuer_ref.ts`, plus this driver's `ClusterTrustBundle` refs,
 * `trust_bundle_ref.ts`): {@link buildClass}, which the webhook
 * applies, and {@link parseClassRefs}, which the driver and the status controller read them with,
 * side by side so the shape is written down once.
 *
 * @module
 */

import {
  CLASS_API_VERSION,
  CLASS_KIND,
  CLUSTER_ISSUER_KIND,
  isNamespaceName,
  ISSUER_GROUP,
  ISSUER_KIND,
  TRUST_BUNDLE_GROUP,
  TRUST_BUNDLE_KIND,
} from "./contract.ts";
import { KeyNotFoundError, SourceError } from "./errors.ts";
import {
  isIssuerKind,
  type IssuerKind,
  type IssuerRef,
  issuerRefName,
  issuerSecret,
  parseIssuerRef,
} from "./issuer_ref.ts";
import {
  parseTrustBundleRef,
  type TrustBundleRef,
  trustBundleRefName,
} from "./trust_bundle_ref.ts";
/**
 * First key a ref without `key` reads (cert-manager's CA key, `kube-root-ca.crt`, service-account
 * token Secrets); see {@link refKey}.
 */
export const DEFAULT_KEY = "ca.crt";
/**
 * Key a ref without `key` reads when the object has no {@link DEFAULT_KEY}: `kubernetes.io/tls`
 * Secrets, which kubeops/csi-driver-cacerts reads for a keyless ref.
 */
export const FALLBACK_KEY = "tls.crt";

/** A namespaced object name. */
export interface ObjectName {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
}

/** Kinds a ref may point at. */
export type SourceKind = "Secret" | "ConfigMap";

/** A parsed reference to a Secret or ConfigMap (and maybe one key of it). */
export interface SourceRef extends ObjectName {
  /** Secret or ConfigMap. */
  kind: SourceKind;
  /** Key named in the ref; undefined for a keyless ref (the object decides, see {@link refKey}). */
  key: string | undefined;
  /** Position in `spec.refs`, for messages. */
  index: number;
  /**
   * The cert-manager issuer this Secret ref stands for (e.g. `ClusterIssuer root`), set by
   * {@link issuerSecretRef}: a missing key is then fixed in the Secret or the issuer, not with
   * the ref's `key`.
   */
  via?: string;
}

/**
 * A parsed `spec.refs` entry: a Secret or ConfigMap key, ClusterTrustBundles, or a cert-manager
 * Issuer or ClusterIssuer.
 */
export type ClassRef = SourceRef | TrustBundleRef | IssuerRef;

/** Whether a parsed ref is a Secret or ConfigMap ref (not ClusterTrustBundles, not an issuer). */
export function isSourceRef(ref: ClassRef): ref is SourceRef {
  return ref.kind === "Secret" || ref.kind === "ConfigMap";
}

/** Whether a parsed ref is a cert-manager Issuer or ClusterIssuer ref. */
export function isIssuerRef(ref: ClassRef): ref is IssuerRef {
  return isIssuerKind(ref.kind);
}

/** Whether a parsed ref selects ClusterTrustBundles. */
export function isTrustBundleRef(ref: ClassRef): ref is TrustBundleRef {
  return ref.kind === TRUST_BUNDLE_KIND;
}

/** How the key a ref reads was chosen. */
export type KeyOrigin =
  /** named in the ref */
  | "Ref"
  /** keyless ref, the object has {@link DEFAULT_KEY} */
  | "Default"
  /** keyless ref, the object lacks {@link DEFAULT_KEY} and has {@link FALLBACK_KEY} */
  | "Fallback";

/** The key a ref reads in one particular object. */
export interface RefKey {
  /** Key inside `data` (or a ConfigMap's `binaryData`). */
  key: string;
  /** How it was chosen. */
  origin: KeyOrigin;
}

/** A ref's key and the PEM text it holds. */
export interface RefText extends RefKey {
  /** The value, decoded (Secret `data` and ConfigMap `binaryData` are base64). */
  text: string;
}

const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Parses the `caProviderClasses` attribute: names or `namespace/name`, separated by commas and/or
 * whitespace. A bare name lives in `defaultNamespace` (the pod's). Duplicates are dropped.
 *
 * @throws {Error} naming the bad entry when a name or namespace is not a valid Kubernetes name
 */
export function parseClassList(value: string, defaultNamespace: string): ObjectName[] {
  const out: ObjectName[] = [];
  const seen = new Set<string>();
  for (const entry of value.split(/[\s,]+/).filter((s) => s !== "")) {
    const parts = entry.split("/");
    if (parts.length > 2) throw new Error(`"${entry}" is neither a name nor namespace/name`);
    const [namespace, name] = parts.length === 2 ? parts : [defaultNamespace, parts[0]];
    if (!isNamespaceName(namespace)) {
      throw new Error(`"${entry}": "${namespace}" is not a valid namespace name`);
    }
    if (!DNS_SUBDOMAIN.test(name)) {
      throw new Error(`"${entry}": "${name}" is not a valid object name`);
    }
    const id = `${namespace}/${name}`;
    if (!seen.has(id)) {
      seen.add(id);
      out.push({ namespace, name });
    }
  }
  if (out.length === 0) throw new Error("no class named");
  return out;
}

/** One entry of `spec.refs` as the CAProviderClass schema stores it. */
export interface ClassRefSpec {
  /** `""`: the core API group, the only one supported. */
  apiGroup: "";
  /** Secret or ConfigMap. */
  kind: SourceKind;
  /** Namespace of the object; absent means the class's own. */
  namespace?: string;
  /** Object name. */
  name: string;
  /** Key holding the PEM; absent means `ca.crt`, else `tls.crt` (see {@link refKey}). */
  key?: string;
}

/** A `spec.refs` entry naming one ClusterTrustBundle, as {@link buildClass} writes it. */
export interface TrustBundleRefSpec {
  /** `certificates.k8s.io`. */
  apiGroup: typeof TRUST_BUNDLE_GROUP;
  /** `ClusterTrustBundle`. */
  kind: typeof TRUST_BUNDLE_KIND;
  /** The bundle's name. */
  name: string;
}

/** A `spec.refs` entry naming a cert-manager Issuer or ClusterIssuer, as {@link buildClass} writes it. */
export interface IssuerRefSpec {
  /** `cert-manager.io`. */
  apiGroup: typeof ISSUER_GROUP;
  /** `Issuer` or `ClusterIssuer`. */
  kind: IssuerKind;
  /** An Issuer's namespace; absent means the class's own (never set for a ClusterIssuer). */
  namespace?: string;
  /** The issuer's name. */
  name: string;
}

/** A CAProviderClass object as {@link buildClass} makes it. */
export interface CAProviderClassObject {
  /** `cacerts.csi.cert-manager.io/v1alpha1`. */
  apiVersion: typeof CLASS_API_VERSION;
  /** `CAProviderClass`. */
  kind: typeof CLASS_KIND;
  /** Name, namespace and labels. */
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  /** The refs, in order. */
  spec: { refs: (ClassRefSpec | TrustBundleRefSpec | IssuerRefSpec)[] };
}

/** What {@link buildClass} needs. */
export interface ClassOptions extends ObjectName {
  /** Labels of the object. */
  labels?: Record<string, string>;
  /**
   * The sources, in order: Secret or ConfigMap keys (a ref without namespace or key leaves the
   * field out), a ClusterTrustBundle by name, or a cert-manager Issuer or ClusterIssuer.
   */
  refs: readonly (
    | { kind: SourceKind; namespace?: string; name: string; key?: string }
    | { kind: typeof TRUST_BUNDLE_KIND; name: string }
    | { kind: IssuerKind; namespace?: string; name: string }
  )[];
}

/**
 * Builds a CAProviderClass object (the shape {@link parseClassRefs} reads back): `apiVersion`,
 * `kind`, metadata, and `spec.refs` with `apiGroup: ""` (`certificates.k8s.io` for a
 * ClusterTrustBundle, `cert-manager.io` for an issuer) and only the fields given.
 */
export function buildClass(options: ClassOptions): CAProviderClassObject {
  const metadata: CAProviderClassObject["metadata"] = {
    name: options.name,
    namespace: options.namespace,
  };
  if (options.labels !== undefined) metadata.labels = { ...options.labels };
  return {
    apiVersion: CLASS_API_VERSION,
    kind: CLASS_KIND,
    metadata,
    spec: {
      refs: options.refs.map((ref): ClassRefSpec | TrustBundleRefSpec | IssuerRefSpec => {
        if (ref.kind === TRUST_BUNDLE_KIND) {
          return { apiGroup: TRUST_BUNDLE_GROUP, kind: ref.kind, name: ref.name };
        }
        const namespace = ref.namespace === undefined ? {} : { namespace: ref.namespace };
        if (ref.kind === "Secret" || ref.kind === "ConfigMap") {
          return {
            apiGroup: "" as const,
            kind: ref.kind,
            ...namespace,
            name: ref.name,
            ...(ref.key === undefined ? {} : { key: ref.key }),
          };
        }
        return { apiGroup: ISSUER_GROUP, kind: ref.kind, ...namespace, name: ref.name };
      }),
    },
  };
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * Reads the refs of a CAProviderClass object. Secret and ConfigMap refs (`apiGroup` empty) without
 * a namespace live in the class's namespace; refs without a key keep `key` undefined
 * ({@link refKey} picks it per object). `ClusterTrustBundle` refs (`apiGroup:
 * certificates.k8s.io`) select bundles by `name`, or by `signerName` and `labelSelector` (see
 * `parseTrustBundleRef`). `Issuer` and `ClusterIssuer` refs (`apiGroup: cert-manager.io`) name a
 * cert-manager CA issuer (see `parseIssuerRef`); an Issuer without namespace is the class's.
 *
 * @param object the object as returned by the API server
 * @param where `namespace/name` of the class, for messages
 * @throws {SourceError} naming the class and the ref index when a ref is unusable
 */
export function parseClassRefs(object: unknown, where: ObjectName): ClassRef[] {
  const label = `CAProviderClass ${where.namespace}/${where.name}`;
  const spec = (object as { spec?: { refs?: unknown } } | null)?.spec;
  const refs = spec?.refs;
  if (!Array.isArray(refs) || refs.length === 0) {
    throw new SourceError(`${label} has no spec.refs`);
  }
  return refs.map((raw, i): ClassRef => {
    const ref = (raw ?? {}) as Record<string, unknown>;
    const at = `${label} spec.refs[${i}]`;
    const apiGroup = str(ref.apiGroup) ?? "";
    const kind = str(ref.kind);
    if (kind === TRUST_BUNDLE_KIND) {
      if (apiGroup !== TRUST_BUNDLE_GROUP) {
        throw new SourceError(
          `${at}: kind ${TRUST_BUNDLE_KIND} needs apiGroup "${TRUST_BUNDLE_GROUP}", not ` +
            `"${apiGroup}"`,
        );
      }
      return parseTrustBundleRef(ref, at, i);
    }
    if (isIssuerKind(kind)) {
      if (apiGroup !== ISSUER_GROUP) {
        throw new SourceError(
          `${at}: kind ${kind} needs apiGroup "${ISSUER_GROUP}", not "${apiGroup}"`,
        );
      }
      return parseIssuerRef(ref, at, i, where.namespace);
    }
    if (apiGroup === ISSUER_GROUP && kind !== "Secret" && kind !== "ConfigMap") {
      throw new SourceError(
        `${at}: kind "${kind ?? ""}" of apiGroup "${ISSUER_GROUP}" is not supported: only ` +
          `${ISSUER_KIND} and ${CLUSTER_ISSUER_KIND} are read (a Certificate's CA is in its ` +
          `Secret: reference that Secret with kind Secret)`,
      );
    }
    if (apiGroup !== "" && apiGroup !== "core" && apiGroup !== "v1") {
      throw new SourceError(
        `${at}: apiGroup "${apiGroup}" is not supported (use "" for Secret and ConfigMap, ` +
          `"${TRUST_BUNDLE_GROUP}" for ${TRUST_BUNDLE_KIND}, "${ISSUER_GROUP}" for ` +
          `${ISSUER_KIND} and ${CLUSTER_ISSUER_KIND})`,
      );
    }
    if (kind !== "Secret" && kind !== "ConfigMap") {
      throw new SourceError(
        `${at}: kind "${kind ?? ""}" is not supported (Secret, ConfigMap, ${TRUST_BUNDLE_KIND}, ` +
          `${ISSUER_KIND} or ${CLUSTER_ISSUER_KIND})`,
      );
    }
    if (str(ref.signerName) !== undefined || (ref.labelSelector ?? null) !== null) {
      throw new SourceError(
        `${at}: signerName and labelSelector apply to ${TRUST_BUNDLE_KIND} refs only; remove ` +
          `them from this ${kind} ref`,
      );
    }
    const name = str(ref.name);
    if (!name || !DNS_SUBDOMAIN.test(name)) {
      throw new SourceError(`${at}: name "${name ?? ""}" is missing or invalid`);
    }
    const namespace = str(ref.namespace) ?? where.namespace;
    if (!isNamespaceName(namespace)) {
      throw new SourceError(`${at}: namespace "${namespace}" is invalid`);
    }
    return { kind, namespace, name, key: str(ref.key), index: i };
  });
}

/**
 * `Secret ns/name`, `ConfigMap ns/name`, `ClusterTrustBundle name`, `ClusterTrustBundles of
 * signer s`, `Issuer ns/name` or `ClusterIssuer name`.
 */
export function refObjectName(ref: ClassRef): string {
  if (isSourceRef(ref)) return `${ref.kind} ${ref.namespace}/${ref.name}`;
  return isIssuerRef(ref) ? issuerRefName(ref) : trustBundleRefName(ref);
}

/**
 * The keyless Secret ref a CA issuer stands for: the Secret its `spec.ca.secretName` names (in
 * the Issuer's namespace, or `clusterResourceNamespace` for a ClusterIssuer), read with
 * {@link readRefText} like a Secret ref without key (`ca.crt`, else `tls.crt`).
 *
 * @param ref the parsed Issuer or ClusterIssuer ref
 * @param issuer the issuer object, or null when it does not exist
 * @param clusterResourceNamespace cert-manager's cluster resource namespace
 * @param from where the ref comes from, for messages
 * @throws {SourceError} `SourceNotFound` for a missing issuer, `InvalidRef` for one that is not a
 *   CA issuer (see `issuerSecret`)
 */
export function issuerSecretRef(
  ref: IssuerRef,
  issuer: Record<string, unknown> | null,
  clusterResourceNamespace: string,
  from?: string,
): SourceRef {
  const secret = issuerSecret(ref, issuer, clusterResourceNamespace, from);
  return { kind: "Secret", ...secret, key: undefined, index: ref.index, via: issuerRefName(ref) };
}

function stringMap(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : {};
}

/** Where a key's value lives in an object, and whether it is base64. */
function valueOf(
  kind: SourceKind,
  object: Record<string, unknown>,
  key: string,
): { value: string; base64: boolean } | undefined {
  const data = stringMap(object.data);
  if (typeof data[key] === "string") {
    return { value: data[key] as string, base64: kind === "Secret" };
  }
  if (kind === "ConfigMap") {
    const binary = stringMap(object.binaryData);
    if (typeof binary[key] === "string") return { value: binary[key] as string, base64: true };
  }
  return undefined;
}

function keysOf(kind: SourceKind, object: Record<string, unknown>): string[] {
  const keys = Object.keys(stringMap(object.data));
  if (kind === "ConfigMap") keys.push(...Object.keys(stringMap(object.binaryData)));
  return [...new Set(keys)].sort();
}

/**
 * The key a ref reads in `object` — the one rule for keyless refs, used by the driver when it
 * renders and by the webhook when it writes a class's status:
 *
 * - a ref with `key` reads that key;
 * - a keyless ref reads {@link DEFAULT_KEY} (`ca.crt`) when the object has it, else
 *   {@link FALLBACK_KEY} (`tls.crt`), for Secrets and ConfigMaps alike. kubeops/csi-driver-cacerts
 *   reads `tls.crt` from a keyless Secret (`ca.crt` from a service-account-token Secret) and has
 *   no ConfigMap refs; the two agree on every Secret that lacks `ca.crt`, on service-account
 *   tokens, and on cert-manager's self-signed CA Secrets (the same certificate under both keys).
 *
 * A key counts as present in a Secret's `data`, or a ConfigMap's `data` or `binaryData`.
 *
 * @param ref the parsed ref
 * @param object the Secret or ConfigMap it points at
 * @param from where the ref comes from, for messages (e.g. `CAProviderClass shop/spire-ca`)
 * @throws {KeyNotFoundError} naming the object, the key(s) looked for and the keys present
 */
export function refKey(ref: SourceRef, object: Record<string, unknown>, from?: string): RefKey {
  if (ref.key !== undefined && valueOf(ref.kind, object, ref.key)) {
    return { key: ref.key, origin: "Ref" };
  }
  if (ref.key === undefined) {
    if (valueOf(ref.kind, object, DEFAULT_KEY)) return { key: DEFAULT_KEY, origin: "Default" };
    if (valueOf(ref.kind, object, FALLBACK_KEY)) return { key: FALLBACK_KEY, origin: "Fallback" };
  }
  const what = refObjectName(ref);
  const present = keysOf(ref.kind, object);
  const keys = ref.key === undefined ? [DEFAULT_KEY, FALLBACK_KEY] : [ref.key];
  const field = from ? `${from} spec.refs[${ref.index}].key` : `spec.refs[${ref.index}].key`;
  const presentText = present.length ? present.join(", ") : "none";
  const message = ref.via !== undefined
    ? `${what}${from ? ` (from ${from})` : ""} has neither key "${DEFAULT_KEY}" nor ` +
      `"${FALLBACK_KEY}", the keys the CA Secret of ${ref.via} is read by; keys present: ` +
      `${presentText}. Add the CA certificate as one of them, or point ${ref.via}'s ` +
      `spec.ca.secretName at the Secret that holds it`
    : ref.key === undefined
    ? `${what}${from ? ` (from ${from})` : ""} has neither key "${DEFAULT_KEY}" nor ` +
      `"${FALLBACK_KEY}", the keys a ref without key reads; keys present: ${presentText}. ` +
      `Add one of them, or set ${field} to the key holding the CA certificates`
    : `${what}${from ? ` (from ${from})` : ""} has no key "${ref.key}"; keys present: ` +
      `${presentText}. Fix ${field} or add the key`;
  throw new KeyNotFoundError(message, { object: what, keys, present });
}

function decodeBase64(text: string): string {
  return new TextDecoder().decode(Uint8Array.fromBase64(text));
}

/**
 * Reads a ref's PEM text from its object: the key {@link refKey} picks, decoded.
 *
 * @param ref the parsed ref
 * @param object the Secret or ConfigMap, or null when it does not exist
 * @param from where the ref comes from, for messages
 * @throws {SourceError} with reason `SourceNotFound` when the object does not exist, or
 *   `InvalidRef` when a base64 value does not decode
 * @throws {KeyNotFoundError} when the object lacks the key(s)
 */
export function readRefText(
  ref: SourceRef,
  object: Record<string, unknown> | null,
  from?: string,
): RefText {
  const what = `${refObjectName(ref)}${from ? ` (from ${from})` : ""}`;
  if (!object) {
    throw new SourceError(`${what} not found`, { reason: "SourceNotFound" });
  }
  const chosen = refKey(ref, object, from);
  const found = valueOf(ref.kind, object, chosen.key)!;
  if (!found.base64) return { ...chosen, text: found.value };
  try {
    return { ...chosen, text: decodeBase64(found.value) };
  } catch (error) {
    throw new SourceError(`${what} key "${chosen.key}" is not valid base64`, {
      cause: error,
    });
  }
}
