/**
 * Who the driver reads the cluster as, and what a read it was refused (403) needs: the
 * ServiceAccount and ClusterRoles of manifests/csi/rbac.yaml, the exact `kubectl create
 * rolebinding` command that grants Secret and ConfigMap reads in one namespace
 * ({@link roleBindingCommand}), and the message of a `Forbidden` ref ({@link forbiddenMessage}),
 * which the node server also records as the pod's Warning Event.
 *
 * @module
 */

import {
  type ClassRef,
  CLUSTER_ISSUER_PLURAL,
  isIssuerRef,
  isSourceRef,
  ISSUER_GROUP,
  ISSUER_PLURAL,
  type ObjectName,
  refObjectName,
  TRUST_BUNDLE_GROUP,
  TRUST_BUNDLE_PLURAL,
} from "../api/mod.ts";

/** The driver's ServiceAccount (manifests/csi/rbac.yaml), named in `Forbidden` messages. */
export const DRIVER_SERVICE_ACCOUNT: ObjectName = {
  namespace: "spire-cacerts",
  name: "spire-cacerts-csi",
};
/**
 * The ClusterRole a namespace binds (RoleBinding) to let the driver read its Secrets and
 * ConfigMaps (manifests/csi/rbac.yaml binds it in `spire` only).
 */
export const DRIVER_SOURCE_READER_ROLE = "spire-cacerts-csi-source-reader";
/**
 * The driver's cluster-wide ClusterRole, which grants the ClusterTrustBundle, Issuer and
 * ClusterIssuer reads.
 */
export const DRIVER_CLUSTER_ROLE = "spire-cacerts-csi";

/** Who the driver runs as, for the grant a `Forbidden` message names. */
export interface DriverIdentity {
  /** The driver's ServiceAccount (default {@link DRIVER_SERVICE_ACCOUNT}). */
  serviceAccount?: ObjectName;
  /** ClusterRole bound per namespace for Secret and ConfigMap reads. */
  sourceReaderRole?: string;
  /** ClusterRole bound cluster-wide (ClusterTrustBundle, Issuer and ClusterIssuer reads). */
  clusterRole?: string;
}

/**
 * The ServiceAccount a 403 was answered to, from the API server's message (`User
 * "system:serviceaccount:<namespace>:<name>" cannot list resource ...`): the identity the driver
 * really runs as, whatever the deployment named it. Undefined when the message names another user.
 */
export function serviceAccountOf(answer: string): ObjectName | undefined {
  const match = answer.match(/User "system:serviceaccount:([a-z0-9.-]+):([a-z0-9.-]+)"/);
  return match ? { namespace: match[1], name: match[2] } : undefined;
}

/**
 * The exact command that lets the driver read Secrets and ConfigMaps in `namespace`:
 * `kubectl create rolebinding <role> --clusterrole=<role> --serviceaccount=<ns>:<sa> -n <ns>`.
 */
export function roleBindingCommand(namespace: string, identity: DriverIdentity = {}): string {
  const sa = identity.serviceAccount ?? DRIVER_SERVICE_ACCOUNT;
  const role = identity.sourceReaderRole ?? DRIVER_SOURCE_READER_ROLE;
  return `kubectl create rolebinding ${role} --clusterrole=${role} ` +
    `--serviceaccount=${sa.namespace}:${sa.name} -n ${namespace}`;
}

/**
 * The message of a ref the driver may not read (403 from its list): the object, the class, the
 * API server's answer, the namespace and the grant that fixes it (the RoleBinding command; for
 * ClusterTrustBundles, Issuers and ClusterIssuers the ClusterRole rule). For the CA Secret of an
 * issuer, pass the Secret ref the issuer stands for (`issuerSecretRef`) and a `from` naming the
 * issuer: the RoleBinding is needed in the Secret's namespace (for a ClusterIssuer, the cluster
 * resource namespace).
 *
 * @param ref the ref
 * @param from where it comes from, e.g. `CAProviderClass shop/ca`
 * @param identity the ServiceAccount and ClusterRoles to name (default: the ServiceAccount the
 *   API server's answer names, else the manifests'; the manifests' ClusterRoles)
 * @param answer the API server's answer, e.g. `HTTP 403: secrets is forbidden: ...`
 */
export function forbiddenMessage(
  ref: ClassRef,
  from: string,
  identity: DriverIdentity = {},
  answer?: string,
): string {
  const sa = identity.serviceAccount ?? (answer ? serviceAccountOf(answer) : undefined) ??
    DRIVER_SERVICE_ACCOUNT;
  const grant = { ...identity, serviceAccount: sa };
  const who = `ServiceAccount ${sa.namespace}/${sa.name}`;
  const what = `cannot read ${refObjectName(ref)} (from ${from})${answer ? `: ${answer}` : ""}`;
  if (isIssuerRef(ref)) {
    const role = identity.clusterRole ?? DRIVER_CLUSTER_ROLE;
    return `${what}; the driver's ${who} may not list ${ISSUER_PLURAL}.${ISSUER_GROUP} and ` +
      `${CLUSTER_ISSUER_PLURAL}.${ISSUER_GROUP}; add get, list and watch on them to ClusterRole ` +
      `${role} (manifests/csi/rbac.yaml)`;
  }
  if (!isSourceRef(ref)) {
    const role = identity.clusterRole ?? DRIVER_CLUSTER_ROLE;
    return `${what}; the driver's ${who} may not list ${TRUST_BUNDLE_PLURAL}.` +
      `${TRUST_BUNDLE_GROUP}; add get, list and watch on them to ClusterRole ${role} ` +
      `(manifests/csi/rbac.yaml)`;
  }
  const role = identity.sourceReaderRole ?? DRIVER_SOURCE_READER_ROLE;
  return `${what}; the driver's ${who} may not read Secrets and ConfigMaps in namespace ` +
    `"${ref.namespace}" (no RoleBinding to ClusterRole ${role} there); grant it with ` +
    `\`${roleBindingCommand(ref.namespace, grant)}\``;
}
