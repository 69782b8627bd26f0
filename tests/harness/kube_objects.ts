/**
 * Small helpers the real-apiserver suites share: applying an object as a user would
 * (`kubectl apply -f -`), a CAProviderClass with given refs, and certificate fingerprints in the
 * two forms the suites compare (Node's `AA:BB:…` of each PEM block, and the lower-case hex the
 * class status writes).
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { CLASS_API_VERSION, CLASS_KIND } from "../../api/mod.ts";
import type { KubeApiServer } from "./kube_apiserver.ts";
import type { CertificateFiles } from "./pki.ts";

/** `kubectl apply -f -` of one object (or a List); fails on a refusal. */
export async function applyObject(kube: KubeApiServer, object: unknown): Promise<void> {
  await kube.kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(object), check: true });
}

/** A CAProviderClass `namespace/name` with these `spec.refs`, as a user writes it. */
export function caClassObject(
  namespace: string,
  name: string,
  refs: Record<string, unknown>[],
): Record<string, unknown> {
  return {
    apiVersion: CLASS_API_VERSION,
    kind: CLASS_KIND,
    metadata: { namespace, name },
    spec: { refs },
  };
}

/** Node's SHA-256 fingerprint (`AA:BB:…`) of every certificate in a PEM text, in order. */
export function pemFingerprints(pem: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b).fingerprint256);
}

/** Lower-case hex SHA-256 of a PEM certificate's DER, as the class status writes it. */
export function certSha256(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replaceAll(":", "").toLowerCase();
}

/** The fingerprints of these CAs, sorted and comma-joined (compare with {@link storeFingerprints}). */
export function caFingerprints(...cas: CertificateFiles[]): string {
  return cas.map((ca) => new X509Certificate(ca.certPem).fingerprint256).sort().join(",");
}

/** The fingerprints of a rendered store's bundle file, sorted and comma-joined. */
export async function storeFingerprints(
  target: string,
  file = "ca-certificates.crt",
): Promise<string> {
  return pemFingerprints(await Deno.readTextFile(join(target, file))).sort().join(",");
}
