/**
 * Real components for tests: etcd + kube-apiserver + kubectl, spire-server + spire-agent,
 * spiffe-helper, and the paths of the CSI command-line tools (csi-sanity, csc), all built from Go
 * modules by `tests/tools/build.sh` (`./scripts/deno task tools`).
 *
 * ```ts
 * import { needsTools, startKubeApiServer } from "./mod.ts";
 *
 * Deno.test({ name: "x", ...needsTools(["etcd", "kube-apiserver", "kubectl"]), fn: async () => {
 *   const kube = await startKubeApiServer();
 *   try {
 *     await kube.kubectl(["get", "ns"], { check: true });
 *   } finally {
 *     await kube.stop();
 *   }
 * } });
 * ```
 *
 * @module
 */

export {
  BUILD_COMMAND,
  hasTool,
  isCi,
  needsTools,
  ToolMissingError,
  type ToolName,
  toolPath,
  type ToolRequirement,
  toolsBinDir,
} from "./tools.ts";
export {
  CommandFailedError,
  type CommandResult,
  freePorts,
  hasCommand,
  ManagedProcess,
  ProcessExitedError,
  runCommand,
  type RunCommandOptions,
  startProcess,
  type StartProcessOptions,
  waitFor,
  WaitTimeoutError,
} from "./process.ts";
export {
  type CertificateFiles,
  createCa,
  generateKeyPair,
  issueCertificate,
  type IssueOptions,
  writeLocalhostSvid,
} from "./pki.ts";
export {
  installCrds,
  type KubeApiServer,
  type KubeApiServerOptions,
  type KubeApiServerPki,
  type KubectlOptions,
  SERVICE_CLUSTER_IP_RANGE,
  startKubeApiServer,
  writeServiceAccountKubeconfig,
} from "./kube_apiserver.ts";
export {
  CLUSTER_DNS_IP,
  CLUSTER_HOST_PROGRAMS,
  CLUSTER_TOOLS,
  ClusterCleanupError,
  ClusterHostError,
  type ClusterOptions,
  HOST_IP,
  KUBELET_DIR,
  type LocalCluster,
  missingHostPrograms,
  needsCluster,
  NODE_IP,
  NODE_NAME,
  POD_CIDR,
  startCluster,
} from "./cluster.ts";
export {
  type EntryOptions,
  type Spire,
  SpireCommandError,
  type SpireOptions,
  startSpire,
} from "./spire.ts";
export {
  runSpiffeHelper,
  type SpiffeHelper,
  type SpiffeHelperOptions,
  SVID_FILE_NAMES,
} from "./spiffe_helper.ts";
export {
  CgroupError,
  MEMORY_CGROUP_MOUNT,
  MemoryCgroup,
  type MemoryStats,
  type OomControl,
  ownMemoryCgroup,
  parseOomControl,
} from "./cgroup.ts";
export {
  buildLocalImages,
  type BuildLocalImagesOptions,
  COREDNS_IMAGE,
  ImageBuildError,
  ImageImportError,
  imagesCacheDir,
  importImages,
  type ImportImagesOptions,
  listContainerdImages,
  type LocalImage,
  manifestImageRefs,
  needsImageTools,
  PAUSE_IMAGE,
} from "./images.ts";
export {
  servedSerial,
  startWebhookProcess,
  waitForWebhook,
  type WebhookProcess,
  type WebhookProcessOptions,
} from "./webhook_process.ts";
