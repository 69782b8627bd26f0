/**
 * The spire-cacerts admission webhook and namespace controller.
 *
 * - {@link createApp}: the admission endpoint as a pure Hono app (`POST /mutate`). Pods labelled
 *   `spiffe.io/spire-managed-identity: "true"` get the CSI volume (`cacerts.csi.cert-manager.io`,
 *   read-only, attributes `os` and `caProviderClasses`) and a read-only mount in every container
 *   and init container. Annotations under `cacerts.spiffe.io/`: `inject` (`"false"` opts out),
 *   `os` (an OS family; the mount then defaults to that family's store directory, e.g.
 *   `/etc/pki/ca-trust/extracted` for rhel, else `/etc/ssl/certs`), `containers` (comma list),
 *   `mount-path`, `env` (`"true"` sets SSL_CERT_FILE, SSL_CERT_DIR, NODE_EXTRA_CA_CERTS,
 *   REQUESTS_CA_BUNDLE and appends trust-store options to JAVA_TOOL_OPTIONS). Unknown keys or
 *   values are refused with a message that echoes a value capped at 64 characters
 *   ({@link quoteValue}). A dry run is mutated like the create; a reinvocation mounts the store
 *   into containers added since.
 * - {@link Controller}: CAProviderClass `spire-ca` in every namespace not excluded, and SPIRE's
 *   `spire/spire-bundle` ConfigMap mirrored into the ClusterTrustBundle of signer
 *   `cacerts.csi.cert-manager.io/spire-<trust-domain>` (which the classes reference) and the
 *   Secret `spire/spire-ca-bundle`, each switchable.
 * - {@link ClassStatusController} ({@link startClassStatus}): the status of every CAProviderClass
 *   (Ready with reason and message, resolved refs and keys, certificate count, fingerprints,
 *   earliest NotAfter), from the Secrets, ConfigMaps and ClusterTrustBundles it may read.
 * - {@link TrustRestartController} ({@link startTrustRestart}): Deployments, StatefulSets and
 *   DaemonSets annotated `cacerts.spiffe.io/restart-on-trust-change` (or in an annotated
 *   namespace) rolled out when their classes' CA set gains a certificate, after a settle delay and
 *   at most once per interval ({@link planTrustRestart}).
 * - {@link RegistrationSync}: the ClusterSPIFFEIDs of a directory (the registrations ConfigMap),
 *   server-side applied once their CRD is served and kept applied (file changes, periodic repair).
 * - {@link startWebhookServer}: HTTPS with the SPIRE SVID from spiffe-helper's files, swapped
 *   live; `/healthz`, `/readyz`, `/metrics` on a separate plain-HTTP port. `/readyz` fails
 *   {@link DEFAULT_EXPIRY_MARGIN_MS} before the served SVID expires; {@link WebhookServer.shutdown}
 *   drains (readiness off, serving for a delay, in-flight requests finished within a timeout).
 *   Reload problems are warned once each ({@link SvidReloadReporter}) and failed handshakes
 *   counted by reason and summarised ({@link HandshakeFailureReporter}).
 * - {@link prepareControllers}: the controllers above wired together; `main.ts` loads it with a
 *   dynamic `import()` only when the controller runs.
 *
 * The MutatingWebhookConfiguration's `caBundle` is kept current by SPIRE's k8sbundle notifier
 * (`webhook_label`), not by this program: SPIRE already knows every root the moment it changes,
 * including roots prepared ahead of CA rotation, and the notifier patches configurations created
 * later too.
 *
 * @module
 */

export {
  type AdmissionEnv,
  type AdmissionEvent,
  type AdmissionResult,
  type AppConfig,
  createApp,
  DEFAULT_MAX_BODY_BYTES,
  type RefusalEvent,
  type RefusalReason,
} from "./app.ts";
export {
  ANNOTATION_PREFIX,
  ANNOTATIONS,
  DEFAULT_MOUNT_PATH,
  escapePointerToken,
  INJECT_LABEL,
  InvalidAnnotationError,
  type JsonPatchOperation,
  type MutationConfig,
  type MutationPlan,
  normaliseMountPath,
  planMutation,
  type PodOptions,
  readPodOptions,
  VOLUME_NAME,
  wantsInjection,
} from "./mutate.ts";
export {
  type BundleFailure,
  BundlePublishError,
  bundleSecretPem,
  type BundleSync,
  type BundleWrite,
  type ClassSource,
  Controller,
  type ControllerOptions,
  DEFAULT_EXCLUDED_NAMESPACES,
  desiredClass,
  FIELD_MANAGER,
  type KeyRef,
  MANAGED_LABEL,
  MANAGED_VALUE,
} from "./controller.ts";
export {
  applyStatusWriter,
  type ClassFeed,
  classInformerFeed,
  type ClassObject,
  type ClassStatus,
  ClassStatusController,
  type ClassStatusControllerOptions,
  computeClassStatus,
  type ComputedStatus,
  type ComputeStatusOptions,
  DEFAULT_SERVICE_ACCOUNT,
  type DroppedCertificateStatus,
  forbiddenMessage,
  MAX_DROPPED_ENTRIES,
  MAX_DROPPED_TEXT,
  nextReadyCondition,
  READY,
  type ReadyCondition,
  type ReadyReason,
  type ResolvedRef,
  rfc3339,
  SOURCE_READER_ROLE,
  type SourceFeed,
  type SourceLookup,
  type SourceState,
  startClassStatus,
  type StartClassStatusOptions,
  STATUS_FIELD_MANAGER,
  statusDiffers,
  type StatusWriter,
  storedReadyCondition,
} from "./class_status.ts";
export { type Feed, type FeedHandlers, type FeedSource, informerFeed } from "./informer_feed.ts";
export {
  type ClassTrust,
  classTrust,
  DEFAULT_WRITE_CONCURRENCY,
  kubeWorkloadWriter,
  type NamespaceView,
  RESTART_EVENT_REASON,
  restartMessage,
  startTrustRestart,
  type StartTrustRestartOptions,
  TRUST_RESTART_ERRORS,
  TRUST_RESTART_FIELD_MANAGER,
  TRUST_RESTARTS,
  TrustRestartController,
  type TrustRestartOptions,
  WORKLOAD_PLURALS,
  type WorkloadWriter,
} from "./trust_restart.ts";
export {
  DEFAULT_INTERVAL_MS,
  DEFAULT_SETTLE_MS,
  formatFingerprints,
  type Gain,
  lastTrustRestart,
  parseFingerprints,
  planTrustRestart,
  prefixedAnnotations,
  type RestartInputs,
  type RestartPlan,
  type RestartSetting,
  restartSetting,
  templateClasses,
  type TemplateVolume,
  type WorkloadKind,
  type WorkloadView,
  workloadView,
} from "./trust_restart_plan.ts";
export { LATENCY_BUCKETS, WebhookMetrics } from "./metrics.ts";
export {
  type AppliedObject,
  CLUSTER_SPIFFE_ID_API_VERSION,
  CLUSTER_SPIFFE_ID_CRD,
  CLUSTER_SPIFFE_ID_GROUP,
  CLUSTER_SPIFFE_ID_KIND,
  CLUSTER_SPIFFE_ID_PLURAL,
  CLUSTER_SPIFFE_ID_VERSION,
  type ClusterSpiffeId,
  DEFAULT_REGISTRATION_RESYNC_MS,
  kubeRegistrationApi,
  loadRegistrations,
  parseRegistrations,
  type Registration,
  type RegistrationApi,
  RegistrationApplyError,
  RegistrationFileError,
  type RegistrationFileErrorOptions,
  RegistrationSync,
  type RegistrationSyncOptions,
  ResourceNotServedError,
  type SyncResult,
} from "./registrations.ts";
export {
  DEFAULT_EXPIRY_MARGIN_MS,
  DEFAULT_SHUTDOWN_DELAY_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  KEEP_ALIVE_TIMEOUT_MS,
  type ShutdownOptions,
  type ShutdownResult,
  startWebhookServer,
  type WebhookServer,
  type WebhookServerOptions,
} from "./server.ts";
export {
  type Controllers,
  type ControllerSettings,
  prepareControllers,
  RegistrationsUnusableError,
} from "./controllers.ts";
export {
  DEFAULT_HANDSHAKE_LOG_INTERVAL_MS,
  HANDSHAKE_FAILURE_REASONS,
  type HandshakeFailureReason,
  handshakeFailureReason,
  HandshakeFailureReporter,
  type HandshakeFailureReporterOptions,
  type ReporterTimers,
} from "./handshake_failures.ts";
export {
  DEFAULT_RELOAD_GRACE_MS,
  reloadProblemKey,
  SvidReloadReporter,
  type SvidReloadReporterOptions,
} from "./svid_reload_reporter.ts";
export {
  DEFAULT_OS_FAMILY,
  defaultMountPath,
  DRIVER_NAME,
  type OsFamily,
  type StoreFiles,
  storeFiles,
} from "../api/mod.ts";
export { parseOsFamily } from "../trust_store/mod.ts";
export { ECHO_LIMIT, quoteValue } from "./quote.ts";
// Types from the shared libraries that this module's signatures name.
export type { CAProviderClassObject, KeyOrigin, ObjectName, SourceKind } from "../api/mod.ts";
export type { Logger } from "../cli/mod.ts";
export type { WatchedObject } from "../kube/mod.ts";
export type { Registry } from "../prometheus/mod.ts";
