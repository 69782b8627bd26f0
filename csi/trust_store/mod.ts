/**
 * Trust-store engine: turns PEM sources into a validated, deduplicated set of CA certificates,
 * renders the files each Linux family and runtime reads as its system trust store, and swaps
 * them into a directory atomically with Kubernetes AtomicWriter semantics.
 *
 * ```ts
 * import { AtomicWriter, buildTrustSet, parseOsFamily, renderTrustStore } from "./mod.ts";
 * const set = await buildTrustSet([{ name: "Secret spire/spire-ca-bundle key ca.crt", text }]);
 * const payload = renderTrustStore(parseOsFamily("debian"), set);
 * const { changed } = await new AtomicWriter("/var/lib/target").write(payload);
 * ```
 *
 * @module
 */

export {
  BaseRootsError,
  EmptyTrustSetError,
  PayloadPathError,
  PemError,
  UnknownOsFamilyError,
} from "./errors.ts";
export { parsePem, type PemBlock } from "./pem.ts";
export { parseCertificate, type TrustedCertificate } from "./certificate.ts";
export {
  type BaseInfo,
  type BaseRoots,
  buildTrustSet,
  DEFAULT_BUNDLED_PATH,
  DEFAULT_DPKG_STATUS_PATHS,
  type PemSource,
  type TrustSet,
  type TrustSetOptions,
} from "./trust_set.ts";
export { subjectHash } from "./subject_hash.ts";
export { encodeJks, JKS_PASSWORD } from "./jks.ts";
export {
  defaultMountPath,
  OS_FAMILIES,
  type OsFamily,
  parseOsFamily,
  type Payload,
  renderTrustStore,
} from "./layouts.ts";
export { AtomicWriter, type AtomicWriterOptions, type WriteResult } from "./atomic_writer.ts";
