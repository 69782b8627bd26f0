/**
 * The ClusterTrustBundle (`certificates.k8s.io/v1`, cluster-scoped) the bundle mirror publishes
 * SPIRE's roots in: its signer name, derived from the trust domain under the project's own
 * domain (`cacerts.csi.cert-manager.io/spire-<trust-domain>`), its object name (the API requires
 * `<signer name with "/" as ":">:<suffix>`), and the object itself, refused above the API's
 * 1 MiB limit.
 *
 * The trust domain comes from the command line (`--trust-domain`), not from SPIRE's bundle: the
 * webhook's ClusterRole must name the signer (`attest` on `signers`, resourceNames = the signer
 * name) and the object (create/patch, resourceNames = the object name) when it is deployed, so
 * the name must be fixed before any bundle is read; and a name read from the data would let
 * whoever writes that ConfigMap choose which signer the bundle is published under.
 *
 * No import of the Kubernetes client: the flag parser checks `--trust-domain` with
 * {@link signerNameFor} without loading the controller.
 *
 * @module
 */

import {
  CLASS_GROUP,
  TRUST_BUNDLE_GROUP,
  TRUST_BUNDLE_KIND,
  TRUST_BUNDLE_VERSION,
} from "../api/mod.ts";

/** The domain of every signer name this project uses (the CAProviderClass API group). */
export const SIGNER_DOMAIN = CLASS_GROUP;
/** Suffix of the published object's name after the signer prefix. */
export const BUNDLE_NAME_SUFFIX = "bundle";
/** Largest `spec.trustBundle` the API server stores (1 MiB, the same limit as a Secret). */
export const MAX_TRUST_BUNDLE_BYTES = 1024 * 1024;
/** Trust domain of the shipped manifests (`manifests/spire/server.conf`). */
export const DEFAULT_TRUST_DOMAIN = "example.org";

/** A trust domain that cannot be part of a signer name. */
export class TrustDomainError extends Error {
  /** The trust domain as given. */
  readonly trustDomain: string;

  /**
   * Makes the error.
   *
   * @param trustDomain the value refused
   * @param message what is wrong and the fix
   */
  constructor(trustDomain: string, message: string) {
    super(message);
    this.name = "TrustDomainError";
    this.trustDomain = trustDomain;
  }
}

/** The bundle is larger than a ClusterTrustBundle may hold. */
export class TrustBundleTooLargeError extends Error {
  /** The object that was not written. */
  readonly objectName: string;
  /** Size of the PEM in bytes. */
  readonly bytes: number;

  /**
   * Makes the error.
   *
   * @param objectName the ClusterTrustBundle
   * @param bytes size of the refused PEM
   */
  constructor(objectName: string, bytes: number) {
    super(
      `ClusterTrustBundle ${objectName} spec.trustBundle would be ${bytes} bytes, above the ` +
        `API's limit of ${MAX_TRUST_BUNDLE_BYTES}; SPIRE's bundle holds too many roots: prune ` +
        `the roots SPIRE publishes, or run with --cluster-trust-bundle=false`,
    );
    this.name = "TrustBundleTooLargeError";
    this.objectName = objectName;
    this.bytes = bytes;
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The signer name of a trust domain: `cacerts.csi.cert-manager.io/spire-<trust-domain>`.
 *
 * The API takes a signer name `<domain>/<path>` whose path is dot-separated DNS labels, so a
 * trust domain is accepted when each dot-separated part is a DNS label (lower-case letters,
 * digits and inner `-`, at most 63 characters). SPIFFE also allows `_`, which a signer name
 * cannot hold.
 *
 * @param trustDomain SPIRE's trust domain (e.g. `example.org`)
 * @throws {TrustDomainError} naming the value, the rule and the fix
 */
export function signerNameFor(trustDomain: string): string {
  const bad = (why: string) =>
    new TrustDomainError(
      trustDomain,
      `trust domain "${trustDomain}" ${why}; set --trust-domain to SPIRE's trust_domain ` +
        `(server.conf), or run with --cluster-trust-bundle=false`,
    );
  if (trustDomain === "") throw bad("is empty");
  if (trustDomain.length > 200) throw bad("is longer than 200 characters");
  const labels = trustDomain.split(".");
  const label = labels.find((l) => l.length > 63 || !DNS_LABEL.test(l));
  if (label !== undefined) {
    throw bad(
      `cannot be part of a ClusterTrustBundle signer name: "${label}" is not a DNS label ` +
        `(lower-case letters, digits and inner "-", at most 63 characters)`,
    );
  }
  // "spire-" + the first label is at most 69 characters; a path part may have 253.
  return `${SIGNER_DOMAIN}/spire-${trustDomain}`;
}

/**
 * The object name of the ClusterTrustBundle published for a signer:
 * `<signer with "/" as ":">:bundle`, e.g. `cacerts.csi.cert-manager.io:spire-example.org:bundle`.
 */
export function bundleObjectName(signerName: string): string {
  return `${signerName.replaceAll("/", ":")}:${BUNDLE_NAME_SUFFIX}`;
}

/** A ClusterTrustBundle as the mirror applies it. */
export interface ClusterTrustBundleObject {
  /** `certificates.k8s.io/v1`. */
  apiVersion: `${typeof TRUST_BUNDLE_GROUP}/${typeof TRUST_BUNDLE_VERSION}`;
  /** `ClusterTrustBundle`. */
  kind: typeof TRUST_BUNDLE_KIND;
  /** Name and labels. */
  metadata: { name: string; labels: Record<string, string> };
  /** Signer and PEM. */
  spec: { signerName: string; trustBundle: string };
}

/**
 * The ClusterTrustBundle holding `pem` for `signerName`, named by {@link bundleObjectName}.
 *
 * @param signerName from {@link signerNameFor}
 * @param pem CERTIFICATE blocks without headers, no duplicates, CA certificates only (what
 *   `bundleSecretPem` returns; the API server refuses anything else)
 * @param labels labels of the object
 * @throws {TrustBundleTooLargeError} when the PEM exceeds {@link MAX_TRUST_BUNDLE_BYTES}
 */
export function clusterTrustBundle(
  signerName: string,
  pem: string,
  labels: Record<string, string>,
): ClusterTrustBundleObject {
  const name = bundleObjectName(signerName);
  const bytes = new TextEncoder().encode(pem).length;
  if (bytes > MAX_TRUST_BUNDLE_BYTES) throw new TrustBundleTooLargeError(name, bytes);
  return {
    apiVersion: `${TRUST_BUNDLE_GROUP}/${TRUST_BUNDLE_VERSION}`,
    kind: TRUST_BUNDLE_KIND,
    metadata: { name, labels: { ...labels } },
    spec: { signerName, trustBundle: pem },
  };
}
