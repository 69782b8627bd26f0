/**
 * `spire-cacerts-csi`: the CSI node plugin that puts CA certificates from CAProviderClasses into
 * pods' system trust stores and keeps them current.
 *
 * On SIGTERM or SIGINT it stops in this order, so that nothing kubelet started is cut off: /healthz
 * and the CSI Probe turn false first (the readiness probe sees it while the rest runs); the gRPC
 * server stops accepting and answers the calls in flight, for at most `--shutdown-timeout`
 * (default 10 s, a third of the pod's default 30 s grace period), then cancels what is left; then
 * the object watches stop and the process exits 0. A signal that arrives while the driver is still
 * restoring its volumes is kept and acted on as soon as serving has started.
 *
 * `@peculiar/x509` (and the `reflect-metadata` shim it needs) is only loaded by `--self-test`:
 * the driver itself parses certificates with trust_store's own DER reader. Importing it with the
 * driver costs 13 MB of resident memory (93.0 MB instead of 80.0 MB for an idle process that
 * imports csi/main.ts) and 0.1 s of start-up on the 2-core benchmark machine
 * (bench/driver_memory_bench.ts), paid by every node for nothing; tests/csi_imports_test.ts keeps
 * it out of the static import graph.
 *
 * @module
 */

import { hostname } from "node:os";
import { DEFAULT_CLUSTER_RESOURCE_NAMESPACE, DRIVER_NAME, isNamespaceName } from "../api/mod.ts";
import { KubeClient, type KubeConfig, loadKubeConfig } from "../kube/mod.ts";
import { createNodeDriver } from "./driver.ts";
import type { BaseRoots } from "../trust_store/mod.ts";
import { startHealthServer } from "./http.ts";
import {
  answerMode,
  createLogger,
  type FlagTable,
  heapLimitWarning,
  LOG_LEVELS,
  type LogLevel,
  type Mode,
  modeOf,
  parseFlagTable,
  renderFlags,
  UsageError,
  VERSION,
} from "../cli/mod.ts";
import { startCsiServer } from "./server.ts";
import { runSelfTest } from "./self_check.ts";

/** Program name. */
export const PROGRAM = "spire-cacerts-csi";
/** Default CSI driver name: the contract's `DRIVER_NAME`. */
export const DEFAULT_DRIVER_NAME: typeof DRIVER_NAME = DRIVER_NAME;

/** The command line: name, kind, default, check and help line of every flag. */
export const CSI_FLAGS = {
  endpoint: {
    type: "string",
    arg: "URL",
    default: "unix:///csi/csi.sock",
    help: "CSI socket (default {default})",
  },
  "node-id": {
    type: "string",
    arg: "ID",
    help: "node id for NodeGetInfo (default: $NODE_NAME or the hostname)",
  },
  "driver-name": {
    type: "string",
    arg: "NAME",
    default: DEFAULT_DRIVER_NAME,
    help: "CSI driver name (default {default})",
  },
  "state-dir": {
    type: "string",
    arg: "DIR",
    default: "/var/lib/spire-cacerts",
    help: "volume records (default {default})",
  },
  "health-addr": {
    type: "string",
    arg: "HOST:PORT",
    default: ":9809",
    help: "/healthz and /metrics (default {default})",
  },
  kubeconfig: {
    type: "string",
    arg: "PATH",
    help: "kubeconfig (default: in-cluster service account)",
  },
  "allowed-ref-namespaces": {
    type: "list",
    arg: "NS",
    help: "comma list of namespaces classes may reference besides the pod's",
  },
  "cluster-resource-namespace": {
    type: "string",
    arg: "NS",
    nonEmpty: true,
    default: DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
    expect: "a namespace name",
    parse: (text: string) => isNamespaceName(text) ? text : undefined,
    help: "\nwhere a ClusterIssuer's CA Secret is read: cert-manager's own\n" +
      "--cluster-resource-namespace (default {default})",
  },
  "plain-dir": {
    type: "boolean",
    help: "write into the target directory instead of mounting a tmpfs",
  },
  "tmpfs-size": {
    type: "string",
    arg: "SIZE",
    default: "8Mi",
    expect: "a size such as 8Mi, 512Ki or 1048576",
    parse: (text: string) => /^[1-9][0-9]*([kmg]i?)?$/i.test(text) ? text : undefined,
    help:
      "cap on each volume's tmpfs, sized from its store with room for the next (default {default})",
  },
  "base-roots": {
    type: "string",
    arg: "KIND",
    default: "bundled",
    expect: "none, bundled or file:/absolute/path",
    parse: (text: string): BaseRoots | undefined =>
      text === "none" || text === "bundled"
        ? { kind: text }
        : text.startsWith("file:/")
        ? { kind: "file", path: text.slice(5) }
        : undefined,
    help: "public roots under the CAs: none, bundled (this image's\n" +
      "ca-certificates) or file:/path (default {default})",
  },
  "shutdown-timeout": {
    type: "duration",
    arg: "D",
    default: "10s",
    help: "on SIGTERM, wait this long for CSI calls in flight (default {default})",
  },
  "render-concurrency": {
    type: "number",
    arg: "N",
    min: 1,
    default: "32",
    help: "volumes re-rendered at once after a change (default {default})",
  },
  "log-level": {
    type: "enum",
    arg: "LEVEL",
    values: LOG_LEVELS,
    default: "info",
    help: "debug, info, warn or error (default {default})",
  },
  "self-test": { type: "boolean", help: "run the in-memory self-test and exit" },
  version: { type: "boolean", help: "print the version" },
  help: { type: "boolean", help: "this text" },
} as const satisfies FlagTable;

const HELP = `${PROGRAM} ${VERSION}: CSI node plugin serving live system trust stores.

Usage: ${PROGRAM} [flags]

${renderFlags(CSI_FLAGS)}
`;

export { UsageError, VERSION };

/** Parsed flags. */
export interface CsiFlags {
  /** --endpoint */
  endpoint: string;
  /** --node-id */
  nodeId: string;
  /** --driver-name */
  driverName: string;
  /** --state-dir */
  stateDir: string;
  /** --health-addr */
  healthAddr: string;
  /** --kubeconfig */
  kubeconfig?: string;
  /** --allowed-ref-namespaces */
  allowedRefNamespaces: string[];
  /** --cluster-resource-namespace */
  clusterResourceNamespace: string;
  /** --plain-dir */
  plainDir: boolean;
  /** --tmpfs-size */
  tmpfsSize: string;
  /** --log-level */
  logLevel: LogLevel;
  /** --base-roots */
  baseRoots: BaseRoots;
  /** --render-concurrency */
  renderConcurrency: number;
  /** --shutdown-timeout, in ms */
  shutdownTimeoutMs: number;
  /** --help / --version / --self-test */
  mode: Mode;
}

/**
 * Parses the command line.
 *
 * @throws {UsageError} for an unknown flag or a bad value
 */
export function parseFlags(args: string[]): CsiFlags {
  const values = parseFlagTable(CSI_FLAGS, args);
  return {
    renderConcurrency: values["render-concurrency"],
    shutdownTimeoutMs: values["shutdown-timeout"],
    baseRoots: values["base-roots"],
    endpoint: values.endpoint,
    nodeId: values["node-id"] || Deno.env.get("NODE_NAME") || hostname(),
    driverName: values["driver-name"],
    stateDir: values["state-dir"],
    healthAddr: values["health-addr"],
    kubeconfig: values.kubeconfig,
    allowedRefNamespaces: values["allowed-ref-namespaces"],
    clusterResourceNamespace: values["cluster-resource-namespace"],
    plainDir: values["plain-dir"],
    tmpfsSize: values["tmpfs-size"],
    logLevel: values["log-level"],
    mode: modeOf(values),
  };
}

/** Runs the program until SIGTERM/SIGINT; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let flags: CsiFlags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    console.error(`${PROGRAM}: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const answered = await answerMode(flags.mode, {
    program: PROGRAM,
    version: VERSION,
    help: HELP,
    selfTest: () => runSelfTest(flags.driverName, VERSION),
  });
  if (answered !== undefined) return answered;
  const logger = createLogger(flags.logLevel);
  const heapWarning = heapLimitWarning();
  if (heapWarning) logger.warn(heapWarning);
  // Listening from here on: a SIGTERM during restore is acted on once serving has started.
  const signal = new Promise<string>((resolve) => {
    Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
    Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  });
  let kubeConfig: KubeConfig;
  try {
    kubeConfig = await loadKubeConfig(flags.kubeconfig);
  } catch (error) {
    logger.error("cannot load cluster access", { error: (error as Error).message });
    return 1;
  }
  const client = new KubeClient(kubeConfig);
  const driver = createNodeDriver({
    driverName: flags.driverName,
    nodeId: flags.nodeId,
    stateDir: flags.stateDir,
    plainDir: flags.plainDir,
    tmpfsSize: flags.tmpfsSize,
    allowedRefNamespaces: flags.allowedRefNamespaces,
    clusterResourceNamespace: flags.clusterResourceNamespace,
    baseRoots: flags.baseRoots,
    renderConcurrency: flags.renderConcurrency,
    client,
    logger,
  });
  let ready = false;
  const health = startHealthServer(flags.healthAddr, driver.metrics, () => ready);
  await driver.restore();
  const server = await startCsiServer({
    endpoint: flags.endpoint,
    driverName: flags.driverName,
    version: VERSION,
    nodeId: flags.nodeId,
    node: driver,
    logger,
    ready: () => ready,
  });
  ready = true;
  logger.info("serving", {
    endpoint: flags.endpoint,
    driverName: flags.driverName,
    nodeId: flags.nodeId,
    healthPort: health.port,
    plainDir: flags.plainDir,
  });
  const received = await signal;
  ready = false;
  logger.info("stopping", { signal: received, inFlight: server.inFlight });
  const stopped = await server.stop(flags.shutdownTimeoutMs);
  if (stopped.drained) logger.info("CSI calls drained", { inFlight: stopped.inFlight });
  else {
    logger.warn("CSI calls cancelled after the shutdown timeout", {
      inFlight: stopped.inFlight,
      timeoutMs: flags.shutdownTimeoutMs,
    });
  }
  await driver.stop();
  client.close();
  await health.stop();
  logger.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
