/**
 * The contract between the webhook and the CSI driver, defined once and imported by both: the
 * driver name, the `CAProviderClass` API (`cacerts.csi.cert-manager.io/v1alpha1`, the
 * kubeops/csi-driver-cacerts schema) with the builder the webhook applies and the parser the
 * driver reads it with (Secret and ConfigMap refs, `ClusterTrustBundle` refs by name or by
 * signer and labels, and cert-manager CA `Issuer` and `ClusterIssuer` refs), which key a keyless ref reads, the inline volume's attribute keys, the
 * default OS family and mount path per family, the injection label and annotations, the Java
 * keystore password and the store's file paths (re-exported from the renderer), and why a source
 * cannot be used.
 *
 * ```ts
 * import {
 *   buildClass,
 *   DRIVER_NAME,
 *   isSourceRef,
 *   parseClassRefs,
 *   readRefText,
 *   volumeAttributes,
 * } from "./mod.ts";
 * const where = { namespace: "shop", name: "spire-ca" };
 * const object = buildClass({ ...where, refs: [{ kind: "Secret", name: "ca" }] });
 * const [ref] = parseClassRefs(object, where).filter(isSourceRef);
 * const { key, text } = readRefText(ref, { data: { "tls.crt": btoa("PEM") } }, "class");
 * console.log(DRIVER_NAME, volumeAttributes("debian", "spire-ca"), key, text);
 * ```
 *
 * @module
 */

export * from "./contract.ts";
export * from "./class_ref.ts";
export * from "./trust_bundle_ref.ts";
export * from "./issuer_ref.ts";
export * from "./errors.ts";
