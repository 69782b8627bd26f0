/**
 * The names the webhook writes and the CSI driver reads, defined once: the driver name, the
 * `CAProviderClass` API (group, version, plural, kind), the `ClusterTrustBundle` API and
 * cert-manager's `Issuer` and `ClusterIssuer` API a ref may name (with cert-manager's default
 * cluster resource namespace), the inline volume's attributes, the OS family assumed when a pod
 * names none and where each family's store is mounted, the pod label and annotations the webhook
 * reads, and the Java keystore password of every rendered store.
 * The class object itself is built by `buildClass` next to `parseClassRefs`, the parser that
 * reads it (`class_ref.ts`); the files inside a store come from the renderer's own table
 * ({@link storeFiles}).
 *
 * @module
 */

import {
  defaultMountPath,
  JKS_PASSWORD,
  OS_FAMILIES,
  type OsFamily,
  type StoreFiles,
  storeFiles,
} from "../trust_store/mod.ts";

export { defaultMountPath, JKS_PASSWORD, OS_FAMILIES, type OsFamily, type StoreFiles, storeFiles };

/** Name of the CSI driver: the CSIDriver object, the volume's `csi.driver`, the plugin's socket. */
export const DRIVER_NAME = "cacerts.csi.cert-manager.io";

/** API group of CAProviderClass (the kubeops/csi-driver-cacerts API). */
export const CLASS_GROUP = "cacerts.csi.cert-manager.io";
/** API version of CAProviderClass. */
export const CLASS_VERSION = "v1alpha1";
/** Plural resource name of CAProviderClass. */
export const CLASS_PLURAL = "caproviderclasses";
/** Kind of CAProviderClass. */
export const CLASS_KIND = "CAProviderClass";
/** `apiVersion` of a CAProviderClass object: `cacerts.csi.cert-manager.io/v1alpha1`. */
export const CLASS_API_VERSION = `${CLASS_GROUP}/${CLASS_VERSION}` as const;

/** API group of ClusterTrustBundle, the `apiGroup` of a CAProviderClass ref of that kind. */
export const TRUST_BUNDLE_GROUP = "certificates.k8s.io";
/** API version of ClusterTrustBundle the driver reads (GA, served by default). */
export const TRUST_BUNDLE_VERSION = "v1";
/** Plural resource name of ClusterTrustBundle (cluster-scoped). */
export const TRUST_BUNDLE_PLURAL = "clustertrustbundles";
/** Kind of ClusterTrustBundle. */
export const TRUST_BUNDLE_KIND = "ClusterTrustBundle";
/** Field selector key ClusterTrustBundles are listed by signer with (`spec.signerName=<signer>`). */
export const TRUST_BUNDLE_SIGNER_FIELD = "spec.signerName";

/** API group of cert-manager's Issuer and ClusterIssuer, the `apiGroup` of a ref of those kinds. */
export const ISSUER_GROUP = "cert-manager.io";
/** API version of Issuer and ClusterIssuer the driver reads. */
export const ISSUER_VERSION = "v1";
/** Kind of a namespaced cert-manager issuer. */
export const ISSUER_KIND = "Issuer";
/** Plural resource name of Issuer (namespaced). */
export const ISSUER_PLURAL = "issuers";
/** Kind of a cluster-scoped cert-manager issuer. */
export const CLUSTER_ISSUER_KIND = "ClusterIssuer";
/** Plural resource name of ClusterIssuer (cluster-scoped). */
export const CLUSTER_ISSUER_PLURAL = "clusterissuers";
/**
 * cert-manager's default "cluster resource namespace" (its `--cluster-resource-namespace`): where
 * the Secret of a ClusterIssuer lives.
 */
export const DEFAULT_CLUSTER_RESOURCE_NAMESPACE = "cert-manager";

/** Volume attribute naming the OS family whose layout is rendered ({@link DEFAULT_OS_FAMILY} when absent). */
export const OS_ATTRIBUTE = "os";
/** Volume attribute naming the CAProviderClasses: names or `namespace/name`, comma/space separated. */
export const CLASSES_ATTRIBUTE = "caProviderClasses";
/** Keys of the inline CSI volume's `volumeAttributes` (the driver's `volume_context`). */
export const VOLUME_ATTRIBUTES: {
  /** {@link OS_ATTRIBUTE}. */
  readonly os: typeof OS_ATTRIBUTE;
  /** {@link CLASSES_ATTRIBUTE}. */
  readonly classes: typeof CLASSES_ATTRIBUTE;
} = { os: OS_ATTRIBUTE, classes: CLASSES_ATTRIBUTE };

/** The OS family assumed when a pod or volume names none. */
export const DEFAULT_OS_FAMILY: OsFamily = "debian";
/** Where {@link DEFAULT_OS_FAMILY}'s store is mounted: `/etc/ssl/certs`. */
export const DEFAULT_MOUNT_PATH: string = defaultMountPath(DEFAULT_OS_FAMILY);

/**
 * The inline volume's attributes as the webhook writes them and the driver reads them.
 *
 * @param os the OS family of the pod's images
 * @param classes the `caProviderClasses` value (e.g. `spire-ca`)
 */
export function volumeAttributes(os: OsFamily, classes: string): Record<string, string> {
  return { [OS_ATTRIBUTE]: os, [CLASSES_ATTRIBUTE]: classes };
}

/** The pod label (value `"true"`) that asks for the trust-store volume. */
export const INJECT_LABEL = "spiffe.io/spire-managed-identity";
/** Prefix of every pod annotation the webhook reads. */
export const ANNOTATION_PREFIX = "cacerts.spiffe.io/";
/** Annotation keys (after {@link ANNOTATION_PREFIX}) and what they take. */
export const ANNOTATIONS = {
  /** `"false"` opts a labelled pod out; `"true"` is the default. */
  inject: "inject",
  /** OS family of the images (see `parseOsFamily`); picks the store layout and mount path. */
  os: "os",
  /** Comma-separated container names (containers or init containers) to mount into. */
  containers: "containers",
  /**
   * Absolute mount path overriding the family's default; normalised (`//a/`, `.`, `..`), and
   * refused when it is `/`, `/etc`, `/run`, `/var/run`, or `/proc`, `/sys`, `/dev` or under them.
   */
  mountPath: "mount-path",
  /** `"true"` sets SSL_CERT_FILE, SSL_CERT_DIR, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, JAVA_TOOL_OPTIONS. */
  env: "env",
  /**
   * Written by the webhook's trust-restart controller on a workload's pod template when it rolls
   * the workload out (RFC 3339), as `kubectl rollout restart` writes
   * `kubectl.kubernetes.io/restartedAt`; read back as the time of the last such rollout.
   */
  trustRestartedAt: "trust-restarted-at",
} as const;

/**
 * Annotation keys (after {@link ANNOTATION_PREFIX}) on a Deployment, StatefulSet or DaemonSet, or
 * (for {@link WORKLOAD_ANNOTATIONS.restartOnTrustChange} only) on a namespace.
 */
export const WORKLOAD_ANNOTATIONS = {
  /**
   * `"true"` asks the webhook's controller to roll the workload out when the CA set of its pods'
   * CAProviderClasses gains a certificate; `"false"` opts out. On a namespace: the default of the
   * workloads in it.
   */
  restartOnTrustChange: "restart-on-trust-change",
  /**
   * Written by the controller: the comma-separated SHA-256 fingerprints of the CA certificates the
   * workload's pods were started with (the baseline a gain is measured against).
   */
  trustedFingerprints: "trusted-fingerprints",
} as const;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Whether `text` is a valid namespace name (an RFC 1123 DNS label: lower-case, at most 63). */
export function isNamespaceName(text: string): boolean {
  return DNS_LABEL.test(text);
}
