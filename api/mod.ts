/**
 * The contract between the webhook and the CSI driver: the `CAProviderClass` API
 * (`cacerts.csi.cert-manager.io/v1alpha1`, the kubeops/csi-driver-cacerts schema), how its refs
 * are parsed and which key a keyless ref reads, and why a source cannot be used.
 *
 * ```ts
 * import { parseClassRefs, readRefText } from "./mod.ts";
 * const where = { namespace: "shop", name: "spire-ca" };
 * const refs = parseClassRefs({ spec: { refs: [{ kind: "Secret", name: "ca" }] } }, where);
 * const { key, text } = readRefText(refs[0], { data: { "tls.crt": btoa("PEM") } }, "class");
 * console.log(key, text);
 * ```
 *
 * @module
 */

export * from "./class_ref.ts";
export * from "./errors.ts";
