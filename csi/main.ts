/**
 * `spire-cacerts-csi`: the CSI node plugin that puts CA certificates from CAProviderClasses into
 * pods' system trust stores and keeps them current.
 *
 * @module
 */

import { KubeConfig } from "@kubernetes/client-node";
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { NodeDriver } from "./driver.ts";
import type { BaseRoots } from "../trust_store/mod.ts";
import { startHealthServer } from "./http.ts";
import { createLogger, type LogLevel } from "../cli/mod.ts";
import { startCsiServer } from "./server.ts";
import { runSelfTest } from "./self_check.ts";

/** Program name. */
export const PROGRAM = "spire-cacerts-csi";
/** Program version. */
export const VERSION = "0.1.0";
/** Default CSI driver name. */
export const DEFAULT_DRIVER_NAME = "cacerts.csi.cert-manager.io";

const HELP = `${PROGRAM} ${VERSION}: CSI node plugin serving live system trust stores.

Usage: ${PROGRAM} [flags]

  --endpoint URL              CSI socket (default unix:///csi/csi.sock)
  --node-id ID                node id for NodeGetInfo (default: $NODE_NAME or the hostname)
  --driver-name NAME          CSI driver name (default ${DEFAULT_DRIVER_NAME})
  --state-dir DIR             volume records (default /var/lib/spire-cacerts)
  --health-addr HOST:PORT     /healthz and /metrics (default :9809)
  --kubeconfig PATH           kubeconfig (default: in-cluster service account)
  --allowed-ref-namespaces NS comma list of namespaces classes may reference besides the pod's
  --plain-dir                 write into the target directory instead of mounting a tmpfs
  --tmpfs-size SIZE           size of each volume's tmpfs (default 8Mi)
  --base-roots KIND           public roots under the CAs: none, bundled (this image's
                              ca-certificates) or file:/path (default bundled)
  --render-concurrency N      volumes re-rendered at once after a change (default 32)
  --log-level LEVEL           debug, info, warn or error (default info)
  --self-test                 run the in-memory self-test and exit
  --version                   print the version
  --help                      this text
`;

/** Thrown for bad command-line flags. */
export class UsageError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

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
  /** --help / --version / --self-test */
  mode: "run" | "help" | "version" | "self-test";
}

/** Parses the command line. */
export function parseFlags(args: string[]): CsiFlags {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        endpoint: { type: "string", default: "unix:///csi/csi.sock" },
        "node-id": { type: "string" },
        "driver-name": { type: "string", default: DEFAULT_DRIVER_NAME },
        "state-dir": { type: "string", default: "/var/lib/spire-cacerts" },
        "health-addr": { type: "string", default: ":9809" },
        kubeconfig: { type: "string" },
        "allowed-ref-namespaces": { type: "string", default: "" },
        "plain-dir": { type: "boolean", default: false },
        "tmpfs-size": { type: "string", default: "8Mi" },
        "log-level": { type: "string", default: "info" },
        "base-roots": { type: "string", default: "bundled" },
        "render-concurrency": { type: "string", default: "32" },
        "self-test": { type: "boolean", default: false },
        version: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const level = values["log-level"] as string;
  if (!["debug", "info", "warn", "error"].includes(level)) {
    throw new UsageError(`--log-level "${level}": use debug, info, warn or error`);
  }
  if (!/^[1-9][0-9]*([kmg]i?)?$/i.test(values["tmpfs-size"] as string)) {
    throw new UsageError(`--tmpfs-size "${values["tmpfs-size"]}": use e.g. 8Mi, 512Ki or 1048576`);
  }
  const base = values["base-roots"] as string;
  let baseRoots: BaseRoots;
  if (base === "none") baseRoots = { kind: "none" };
  else if (base === "bundled") baseRoots = { kind: "bundled" };
  else if (base.startsWith("file:/")) baseRoots = { kind: "file", path: base.slice(5) };
  else throw new UsageError(`--base-roots "${base}": use none, bundled or file:/absolute/path`);
  const renderConcurrency = Number(values["render-concurrency"]);
  if (!Number.isInteger(renderConcurrency) || renderConcurrency < 1) {
    throw new UsageError(
      `--render-concurrency "${values["render-concurrency"]}": a positive integer`,
    );
  }
  return {
    renderConcurrency,
    baseRoots,
    endpoint: values.endpoint as string,
    nodeId: (values["node-id"] as string | undefined) || Deno.env.get("NODE_NAME") || hostname(),
    driverName: values["driver-name"] as string,
    stateDir: values["state-dir"] as string,
    healthAddr: values["health-addr"] as string,
    kubeconfig: values.kubeconfig as string | undefined,
    allowedRefNamespaces: (values["allowed-ref-namespaces"] as string).split(/[\s,]+/).filter(
      Boolean,
    ),
    plainDir: values["plain-dir"] as boolean,
    tmpfsSize: values["tmpfs-size"] as string,
    logLevel: level as LogLevel,
    mode: values.help
      ? "help"
      : values.version
      ? "version"
      : values["self-test"]
      ? "self-test"
      : "run",
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
  if (flags.mode === "help") {
    console.log(HELP);
    return 0;
  }
  if (flags.mode === "version") {
    console.log(`${PROGRAM} ${VERSION}`);
    return 0;
  }
  if (flags.mode === "self-test") {
    await runSelfTest(flags.driverName, VERSION);
    console.log(`${PROGRAM} self-test ok`);
    return 0;
  }
  const logger = createLogger(flags.logLevel);
  const kubeConfig = new KubeConfig();
  if (flags.kubeconfig) kubeConfig.loadFromFile(flags.kubeconfig);
  else kubeConfig.loadFromCluster();
  const driver = new NodeDriver({
    driverName: flags.driverName,
    nodeId: flags.nodeId,
    stateDir: flags.stateDir,
    plainDir: flags.plainDir,
    tmpfsSize: flags.tmpfsSize,
    allowedRefNamespaces: flags.allowedRefNamespaces,
    baseRoots: flags.baseRoots,
    renderConcurrency: flags.renderConcurrency,
    kubeConfig,
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
  const signal = await new Promise<string>((resolve) => {
    Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
    Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  });
  logger.info("stopping", { signal });
  ready = false;
  await server.stop();
  await driver.stop();
  await health.stop();
  logger.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
