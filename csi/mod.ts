/**
 * The CSI node plugin: gRPC server, request validation, CAProviderClass resolution, watches,
 * volume records, and the driver that ties them together.
 *
 * @module
 */

export { DATA_LINK, NodeDriver, type NodeDriverOptions, RenderError } from "./driver.ts";
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
  type NodeHandler,
  socketPathOf,
  startCsiServer,
} from "./server.ts";
export { type HealthServer, parseHostPort, startHealthServer } from "./http.ts";
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
