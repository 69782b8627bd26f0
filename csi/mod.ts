/**
 * The CSI node plugin: gRPC server, request validation, the node server (publish, unpublish,
 * stats, restore, re-render on change) with its collaborators as interfaces (object source,
 * Event recorder, mounter, state store), and {@link createNodeDriver}, which wires the real ones.
 *
 * @module
 */

export { createNodeDriver, type NodeDriverOptions } from "./driver.ts";
export { DATA_LINK, NodeServer, type NodeServerOptions, type VolumeStats } from "./node_server.ts";
export {
  type ObjectSource,
  type ResolveRequest,
  SourceResolver,
  type SourceResolverOptions,
} from "./resolver.ts";
export {
  DRIVER_CLUSTER_ROLE,
  DRIVER_SERVICE_ACCOUNT,
  DRIVER_SOURCE_READER_ROLE,
  type DriverIdentity,
  forbiddenMessage,
  roleBindingCommand,
  serviceAccountOf,
} from "./source_access.ts";
export {
  PayloadCache,
  type PayloadCacheOptions,
  type RenderedStore,
  RenderError,
  storeHash,
} from "./payload_cache.ts";
export {
  CERTIFICATE_DROPPED_REASON,
  type EventBody,
  type EventRecorder,
  type EventsApi,
  KubeEventRecorder,
  type KubeEventRecorderOptions,
  type PodEvent,
  SOURCE_FORBIDDEN_REASON,
  UPDATE_FAILED_REASON,
} from "./events.ts";
export { KeyedLock } from "./concurrency.ts";
export { DependencyIndex } from "./dependency_index.ts";
export {
  hostMounter,
  isMountPoint,
  type Mounter,
  MountError,
  mountTmpfs,
  unmount,
} from "./mount.ts";
export { CsiError, SOURCE_STATUS, toCsiError } from "./errors.ts";
export {
  checkPath,
  CLASSES_ATTRIBUTE,
  DEFAULT_OS,
  OS_ATTRIBUTE,
  POD_KEYS,
  type PodRef,
  type PublishSpec,
  validatePublish,
  type ValidatePublishOptions,
  validateStats,
  validateUnpublish,
} from "./validation.ts";
export {
  type CsiServer,
  type CsiServerOptions,
  type CsiServerStopped,
  DEFAULT_STOP_TIMEOUT_MS,
  type NodeHandler,
  socketPathOf,
  startCsiServer,
} from "./server.ts";
export { type HealthServer, parseHostPort, startHealthServer } from "./http.ts";
export { StateFileError, StateStore, type VolumeRecord, type VolumeStateStore } from "./state.ts";
export {
  controllerService,
  CSI_PROTO,
  identityService,
  type NodeGetVolumeStatsRequest,
  type NodePublishVolumeRequest,
  nodeService,
  type NodeUnpublishVolumeRequest,
  type VolumeCapability,
} from "./proto.ts";
export * as metrics from "./metrics.ts";
export {
  type CsiFlags,
  DEFAULT_DRIVER_NAME,
  parseFlags,
  PROGRAM,
  UsageError,
  VERSION,
} from "./main.ts";

// Types the signatures above use, from the shared libraries, re-exported so this face documents
// its whole API (deno doc --lint: no public API naming a private type). Types of npm packages
// (gRPC's status and ServiceDefinition, KubeConfig) are not: their declarations carry no JSDoc.
export { DRIVER_NAME, type ObjectName, type SourceReason } from "../api/mod.ts";
export { LOG_LEVELS, type Logger, type LogLevel, type Mode } from "../cli/mod.ts";
export type { WatchedKind, WatchedObject } from "../kube/mod.ts";
export type { DefineOptions, Labels, MetricType, Registry } from "../prometheus/mod.ts";
export {
  type BaseRoots,
  OS_FAMILIES,
  type OsFamily,
  type Payload,
  type PemSource,
} from "../trust_store/mod.ts";
