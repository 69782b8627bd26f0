// The names trust_store/mod.ts makes public. They live here, behind one `export *` in mod.ts,
// because `deno check --doc` adds an import of every name a module exports by name to each of
// its examples, and with `noUnusedLocals` the names an example does not use fail the check.

export {
  BaseRootsError,
  EmptyTrustSetError,
  PayloadPathError,
  PemError,
  UnknownOsFamilyError,
} from "./errors.ts";
export { encodePem, parsePem, type PemBlock } from "./pem.ts";
export { parseCertificate, type TrustedCertificate } from "./certificate.ts";
export {
  type BaseInfo,
  type BaseRoots,
  buildTrustSet,
  DEFAULT_BUNDLED_PATH,
  DEFAULT_DPKG_STATUS_PATHS,
  DROP_REASONS,
  type DroppedCertificate,
  type DropReason,
  type PemSource,
  type TrustSet,
  type TrustSetOptions,
} from "./trust_set.ts";
export { subjectHash } from "./subject_hash.ts";
export { encodeJks, JKS_PASSWORD, type JksEntry } from "./jks.ts";
export { encodePkcs12, ORACLE_TRUSTED_KEY_USAGE, type Pkcs12Entry, Pkcs12Error } from "./pkcs12.ts";
export { opensslRefusal } from "./openssl_compat.ts";
export {
  defaultMountPath,
  OS_FAMILIES,
  type OsFamily,
  parseOsFamily,
  type Payload,
  renderTrustStore,
  type StoreFiles,
  storeFiles,
} from "./layouts.ts";
export { AtomicWriter, type AtomicWriterOptions, type WriteResult } from "./atomic_writer.ts";
export {
  changedTmpfsBytes,
  payloadTmpfsBytes,
  SWAP_SLACK_BYTES,
  swapPeakBytes,
  TMPFS_PAGE_BYTES,
  TMPFS_SIZE_STEP_BYTES,
  tmpfsSizeFor,
} from "./store_size.ts";
