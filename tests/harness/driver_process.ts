/**
 * Running the driver program as a child process, for integration tests and benchmarks.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePorts, ManagedProcess, startProcess, waitFor } from "./mod.ts";
import { InspectorError, liveHeapMB } from "./inspector.ts";

/** Options for {@link startDriverProcess}. */
export interface DriverProcessOptions {
  /** Working directory for socket, state and log (created by the caller). */
  dir: string;
  /** kubeconfig path. */
  kubeconfigPath: string;
  /** Extra flags. */
  args?: string[];
  /** State dir (default `<dir>/state`). */
  stateDir?: string;
  /** Log file name inside `dir` (default `driver.log`). */
  logName?: string;
  /** Extra environment, e.g. `DENO_V8_FLAGS` (added to this process's). */
  env?: Record<string, string>;
  /** Run with `--inspect` on a free loopback port, for {@link DriverProcess.liveHeapMB}. */
  inspect?: boolean;
  /**
   * Rewrites the command line before it starts, e.g. `MemoryCgroup.wrap` to run the driver in
   * a memory cgroup from its first instruction (the wrapper must exec the program, same pid).
   */
  wrap?: (argv: string[]) => string[];
}

/** A driver started by {@link startDriverProcess}. */
export interface DriverProcess {
  /** The process. */
  process: ManagedProcess;
  /** `unix://...` endpoint. */
  endpoint: string;
  /** Socket path. */
  socketPath: string;
  /** `http://127.0.0.1:<port>` of /healthz and /metrics. */
  healthUrl: string;
  /** Reads one metric value from /metrics (0 when absent). */
  metric(name: string): Promise<number>;
  /** The process's resident memory now (VmRSS of `/proc/<pid>/status`), in MB (10^6 bytes). */
  rssMB(): number;
  /**
   * The V8 heap still in use after a full garbage collection, in MB (needs `inspect: true`).
   *
   * @throws {InspectorError} when the driver runs without the inspector
   */
  liveHeapMB(): Promise<number>;
}

/** The driver process has no readable VmRSS (it exited). */
export class DriverMemoryError extends Error {
  /**
   * @param pid the process
   * @param options the underlying failure
   */
  constructor(readonly pid: number, options?: ErrorOptions) {
    super(`no VmRSS for driver process ${pid}`, options);
    this.name = "DriverMemoryError";
  }
}

/**
 * VmRSS of `pid` in MB.
 *
 * @throws {DriverMemoryError} when `/proc/<pid>/status` cannot be read or has no VmRSS
 */
export function vmRssMB(pid: number): number {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch (error) {
    throw new DriverMemoryError(pid, { cause: error });
  }
  const kb = text.match(/^VmRSS:\s+(\d+) kB/m)?.[1];
  if (kb === undefined) throw new DriverMemoryError(pid);
  return (Number(kb) * 1024) / 1e6;
}

const MAIN = fileURLToPath(new URL("../../csi/main.ts", import.meta.url));

/** Starts `csi/main.ts` with the current Deno and waits until /healthz answers 200. */
export async function startDriverProcess(options: DriverProcessOptions): Promise<DriverProcess> {
  const socketPath = join(options.dir, "csi.sock");
  const [port, inspectPort] = freePorts(2);
  const healthUrl = `http://127.0.0.1:${port}`;
  const argv = [
    Deno.execPath(),
    "run",
    "-A",
    ...(options.inspect ? [`--inspect=127.0.0.1:${inspectPort}`] : []),
    MAIN,
    `--endpoint=unix://${socketPath}`,
    "--node-id=test-node",
    `--state-dir=${options.stateDir ?? join(options.dir, "state")}`,
    `--health-addr=127.0.0.1:${port}`,
    `--kubeconfig=${options.kubeconfigPath}`,
    "--log-level=debug",
    ...(options.args ?? []),
  ];
  const [program, ...args] = options.wrap ? options.wrap(argv) : argv;
  const process = startProcess({
    name: "spire-cacerts-csi",
    program,
    args,
    logPath: join(options.dir, options.logName ?? "driver.log"),
    env: options.env,
  });
  await waitFor("driver /healthz", async () => {
    process.assertRunning();
    try {
      const res = await fetch(`${healthUrl}/healthz`);
      await res.body?.cancel();
      return res.status === 200;
    } catch {
      return false;
    }
  }, { timeoutMs: 60_000, intervalMs: 100, detail: () => process.logTail() });
  return {
    process,
    endpoint: `unix://${socketPath}`,
    socketPath,
    healthUrl,
    metric: async (name: string) => {
      const text = await (await fetch(`${healthUrl}/metrics`)).text();
      let total = 0;
      for (const line of text.split("\n")) {
        if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
          total += Number(line.slice(line.lastIndexOf(" ") + 1));
        }
      }
      return total;
    },
    rssMB: () => vmRssMB(process.pid),
    liveHeapMB: () =>
      options.inspect
        ? liveHeapMB(inspectPort)
        : Promise.reject(new InspectorError("the driver was started without inspect: true")),
  };
}

/** Writes a kubeconfig for a server that is never contacted (for runs that need no cluster). */
export async function writeUnusedKubeconfig(path: string): Promise<void> {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "none", cluster: { server: "https://127.0.0.1:1" } }],
      users: [{ name: "none", user: { token: "unused" } }],
      contexts: [{ name: "none", context: { cluster: "none", user: "none" } }],
      "current-context": "none",
    }),
  );
}
