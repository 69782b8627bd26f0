/**
 * CAProviderClass refs of cert-manager's `Issuer` and `ClusterIssuer` (`cert-manager.io/v1`), as
 * kubeops/csi-driver-cacerts reads them: the ref's shape and its parser ({@link parseIssuerRef},
 * which `parseClassRefs` calls for those kinds), and the Secret a CA issuer names
 * ({@link issuerSecret}), whose `ca.crt` (else `tls.crt`, the keyless-ref rule of `refKey`) holds
 * the CA certificate.
 *
 * - An `Issuer` is namespaced: a ref without `namespace` names one in the class's namespace, and
 *   its Secret lives in the issuer's namespace.
 * - A `ClusterIssuer` is cluster-scoped: its Secret lives in cert-manager's "cluster resource
 *   namespace" (cert-manager's `--cluster-resource-namespace`, default `cert-manager`), which the
 *   readers are given by the operator (the driver's and the webhook's own
 *   `--cluster-resource-namespace` flag).
 * - Only CA issuers (`spec.ca.secretName`) can be read; an ACME, Vault, Venafi or selfSigned
 *   issuer holds no CA Secret and is refused with a message naming the issuer and its type.
 *
 * The namespace rule of the driver (`--allowed-ref-namespaces`) applies to an Issuer in another
 * namespace than the pod's, as to a Secret there. A ClusterIssuer passes it: it is cluster-scoped,
 * and the namespace of its Secret is not chosen by the class but set by the operator's flag. Its
 * Secret is still read only where a RoleBinding grants the reader Secret reads (e.g. in
 * `cert-manager`).
 *
 * @module
 */

import {
  CLUSTER_ISSUER_KIND,
  CLUSTER_ISSUER_PLURAL,
  isNamespaceName,
  ISSUER_GROUP,
  ISSUER_KIND,
  ISSUER_PLURAL,
  ISSUER_VERSION,
} from "./contract.ts";
import { SourceError } from "./errors.ts";

/** Kinds of cert-manager issuer a ref may name. */
export type IssuerKind = typeof ISSUER_KIND | typeof CLUSTER_ISSUER_KIND;

/** A parsed ref to a cert-manager Issuer or ClusterIssuer. */
export interface IssuerRef {
  /** `Issuer` or `ClusterIssuer`. */
  kind: IssuerKind;
  /** The Issuer's namespace (the class's when the ref names none); `""` for a ClusterIssuer. */
  namespace: string;
  /** The issuer's name. */
  name: string;
  /** Position in `spec.refs`, for messages. */
  index: number;
}

/** A namespaced name of the Secret a CA issuer names. */
export interface IssuerSecret {
  /** The issuer's namespace, or the cluster resource namespace for a ClusterIssuer. */
  namespace: string;
  /** `spec.ca.secretName`. */
  name: string;
}

/** The issuer types cert-manager knows, in the order they are looked for in `spec`. */
const ISSUER_TYPES = ["ca", "acme", "vault", "venafi", "selfSigned"] as const;

const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `a` or `an`, for the word that follows. */
function article(word: string): string {
  return /^[aeiou]/i.test(word) ? "an" : "a";
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** Whether a kind is one of cert-manager's issuer kinds. */
export function isIssuerKind(kind: string | undefined): kind is IssuerKind {
  return kind === ISSUER_KIND || kind === CLUSTER_ISSUER_KIND;
}

/**
 * Reads one `spec.refs` entry of kind `Issuer` or `ClusterIssuer` (its `apiGroup` already
 * checked).
 *
 * @param ref the raw entry
 * @param at where it is, e.g. `CAProviderClass shop/ca spec.refs[2]`
 * @param index its position in `spec.refs`
 * @param classNamespace the class's namespace: an Issuer ref without `namespace` names one there
 * @throws {SourceError} (`InvalidRef`) naming the field and the fix: a missing or invalid name, an
 *   invalid namespace, a `namespace` on a ClusterIssuer ref (cluster-scoped), a `key` (the CA
 *   Secret's key is chosen as for a keyless ref), `signerName` or `labelSelector`
 */
export function parseIssuerRef(
  ref: Record<string, unknown>,
  at: string,
  index: number,
  classNamespace: string,
): IssuerRef {
  const kind = ref.kind as IssuerKind;
  const name = str(ref.name);
  if (name === undefined || !DNS_SUBDOMAIN.test(name)) {
    throw new SourceError(
      `${at}: name "${name ?? ""}" is missing or invalid; set it to the ${kind}'s name`,
    );
  }
  if (str(ref.key) !== undefined) {
    throw new SourceError(
      `${at}: ${
        article(kind)
      } ${kind} ref reads its CA Secret's ca.crt, else tls.crt; remove key ` +
        `"${ref.key}" (or reference the Secret itself with kind Secret and that key)`,
    );
  }
  if (str(ref.signerName) !== undefined || (ref.labelSelector ?? null) !== null) {
    throw new SourceError(
      `${at}: signerName and labelSelector apply to ClusterTrustBundle refs only; remove them ` +
        `from this ${kind} ref`,
    );
  }
  if (kind === CLUSTER_ISSUER_KIND) {
    if (str(ref.namespace) !== undefined) {
      throw new SourceError(
        `${at}: a ClusterIssuer is cluster-scoped; remove namespace "${ref.namespace}" (its ` +
          `Secret is read in the cluster resource namespace, --cluster-resource-namespace)`,
      );
    }
    return { kind, namespace: "", name, index };
  }
  const namespace = str(ref.namespace) ?? classNamespace;
  if (!isNamespaceName(namespace)) {
    throw new SourceError(`${at}: namespace "${namespace}" is invalid`);
  }
  return { kind, namespace, name, index };
}

/** `Issuer <namespace>/<name>` or `ClusterIssuer <name>`. */
export function issuerRefName(ref: IssuerRef): string {
  return ref.kind === CLUSTER_ISSUER_KIND
    ? `${CLUSTER_ISSUER_KIND} ${ref.name}`
    : `${ISSUER_KIND} ${ref.namespace}/${ref.name}`;
}

/**
 * What to say when the API server answers a list of issuers with 404: it does not serve the
 * resource, i.e. cert-manager (its CRDs) is not installed. Names the ref, the resource and the
 * fix.
 *
 * @param ref the parsed ref
 * @param from where the ref comes from, for messages (e.g. `CAProviderClass shop/ca`)
 */
export function issuerNotServedMessage(ref: IssuerRef, from?: string): string {
  const plural = ref.kind === CLUSTER_ISSUER_KIND ? CLUSTER_ISSUER_PLURAL : ISSUER_PLURAL;
  return `cannot read ${issuerRefName(ref)}${from ? ` (from ${from})` : ""}: the API server ` +
    `does not serve ${plural}.${ISSUER_GROUP}/${ISSUER_VERSION} (HTTP 404); install ` +
    `cert-manager (its CRDs), or remove spec.refs[${ref.index}]; retrying`;
}

/**
 * The type of a cert-manager issuer: the first of `ca`, `acme`, `vault`, `venafi`, `selfSigned`
 * set in its `spec`, else the first key of `spec`, else `unknown`.
 */
export function issuerType(issuer: Record<string, unknown>): string {
  const spec = isRecord(issuer.spec) ? issuer.spec : {};
  const known = ISSUER_TYPES.find((type) => spec[type] !== undefined && spec[type] !== null);
  return known ?? Object.keys(spec).sort()[0] ?? "unknown";
}

/**
 * The Secret a CA issuer's `spec.ca.secretName` names: in the Issuer's namespace, or in
 * `clusterResourceNamespace` for a ClusterIssuer.
 *
 * @param ref the parsed ref
 * @param issuer the Issuer or ClusterIssuer, or null when it does not exist
 * @param clusterResourceNamespace where a ClusterIssuer's Secret lives (cert-manager's
 *   `--cluster-resource-namespace`, default `cert-manager`)
 * @param from where the ref comes from, for messages (e.g. `CAProviderClass shop/ca`)
 * @throws {SourceError} `SourceNotFound` when the issuer does not exist; `InvalidRef` naming the
 *   issuer and its type when it is not a CA issuer (no `spec.ca.secretName`)
 */
export function issuerSecret(
  ref: IssuerRef,
  issuer: Record<string, unknown> | null,
  clusterResourceNamespace: string,
  from?: string,
): IssuerSecret {
  const what = `${issuerRefName(ref)}${from ? ` (from ${from})` : ""}`;
  if (issuer === null) {
    throw new SourceError(
      `${what} not found; create it, or fix spec.refs[${ref.index}]`,
      { reason: "SourceNotFound" },
    );
  }
  const spec = isRecord(issuer.spec) ? issuer.spec : {};
  const secretName = isRecord(spec.ca) ? str(spec.ca.secretName) : undefined;
  if (secretName === undefined) {
    const type = issuerType(issuer);
    const why = type === "selfSigned"
      ? "a selfSigned issuer has no CA Secret (each certificate signs itself); reference the " +
        "Secret of a CA certificate it issued, or a CA issuer built on that Secret"
      : type === "ca"
      ? "its spec.ca has no secretName; set it to the Secret holding the CA"
      : "reference a CA issuer, or the Secret holding the CA certificate (kind Secret)";
    throw new SourceError(
      `${what} is ${article(type)} ${type} issuer; only CA issuers (spec.ca.secretName) can be ` +
        `read: ${why}`,
    );
  }
  if (!DNS_SUBDOMAIN.test(secretName)) {
    throw new SourceError(`${what}: spec.ca.secretName "${secretName}" is not a valid Secret name`);
  }
  const namespace = ref.kind === CLUSTER_ISSUER_KIND ? clusterResourceNamespace : ref.namespace;
  return { namespace, name: secretName };
}
