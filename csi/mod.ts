/**
 * The CSI node plugin: gRPC server, request validation, CAProviderClass resolution, watches,
 * volume records, and the driver that ties them together.
 *
 * @module
 */

export { DATA_LINK, NodeDriver, type NodeDriverOptions, RenderError } from "./driver.ts";
export {
  CsiError,
  KeyNotFoundError,
  SourceError,
  type SourceErrorOptions,
  type SourceReason,
} from "./errors.ts";
export {
  CLASS_GROUP,
  CLASS_PLURAL,
  CLASS_VERSION,
  DEFAULT_KEY,
  FALLBACK_KEY,
  type KeyOrigin,
  type ObjectName,
  parseClassList,
  parseClassRefs,
  readRefText,
  type RefKey,
  refKey,
  refObjectName,
  type RefText,
  type SourceKind,
  type SourceRef,
} from "./class_ref.ts";
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
  type NodeHandler,
  socketPathOf,
  startCsiServer,
} from "./server.ts";
export { type HealthServer, parseHostPort, startHealthServer } from "./http.ts";
export { Registry } from "../prometheus/mod.ts";
export { createLogger, type Logger, type LogLevel } from "./log.ts";
export {
  describeApiError,
  objectKey,
  ObjectWatcher,
  type ObjectWatcherOptions,
  type WatchedKind,
  type WatchedObject,
} from "./object_watcher.ts";
export { StateFileError, StateStore, type VolumeRecord } from "./state.ts";
export { controllerService, CSI_PROTO, identityService, nodeService } from "./proto.ts";
export {
  type CsiFlags,
  DEFAULT_DRIVER_NAME,
  parseFlags,
  PROGRAM,
  UsageError,
  VERSION,
} from "./main.ts";
