/**
 * The SPIFFE side of spire-cacerts: load X.509-SVID file sets as spiffe-helper writes them
 * (rejecting torn writes), watch them, serve them live from `node:https`/`node:tls`, trust a
 * SPIRE bundle or OS trust store file as a client, and check SPIFFE IDs.
 *
 * ```ts
 * import https from "node:https";
 * import { ServerCertificateSource } from "./mod.ts";
 *
 * const source = new ServerCertificateSource("/run/spiffe/certs");
 * const server = https.createServer(await source.initialOptions(), (_req, res) => res.end("ok"));
 * source.attach(server);
 * server.listen(8443);
 * ```
 *
 * @module
 */

export {
  DEFAULT_SVID_FILE_NAMES,
  type LoadSvidOptions,
  loadSvidSet,
  SvidChainError,
  SvidExpiredError,
  SvidFileError,
  type SvidFileNames,
  SvidKeyMismatchError,
  type SvidSet,
  SvidSetError,
  verifySvidSet,
} from "./svid.ts";
export {
  type SvidListener,
  SvidWatcher,
  SvidWatcherClosedError,
  type SvidWatcherOptions,
} from "./watcher.ts";
export {
  secureContextOptions,
  type SecureContextTarget,
  ServerCertificateSource,
  type ServerCertificateSourceOptions,
  type TrustAnchors,
  TrustSource,
  TrustSourceError,
} from "./tls.ts";
export {
  authorizePeer,
  InvalidSpiffeIdError,
  isSpiffeId,
  parseSpiffeId,
  type PeerPolicy,
  type SpiffeId,
  spiffeIdFromCertificate,
  UnauthorizedPeerError,
  uriSans,
} from "./spiffe_id.ts";
export { parseCertificates, toPem } from "./pem.ts";
export {
  DerSplitError,
  splitDer,
  svidSetFromWire,
  type WireX509Svid,
  type WorkloadApiOptions,
  WorkloadApiX509Source,
} from "./workload_api.ts";
