/**
 * Running the driver program as a child process, for integration tests and benchmarks.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePorts, ManagedProcess, startProcess, waitFor } from "./mod.ts";

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
}

const MAIN = fileURLToPath(new URL("../../csi/main.ts", import.meta.url));

/** Starts `csi/main.ts` with the current Deno and waits until /healthz answers 200. */
export async function startDriverProcess(options: DriverProcessOptions): Promise<DriverProcess> {
  const socketPath = join(options.dir, "csi.sock");
  const [port] = freePorts(1);
  const healthUrl = `http://127.0.0.1:${port}`;
  const process = startProcess({
    name: "spire-cacerts-csi",
    program: Deno.execPath(),
    args: [
      "run",
      "-A",
      MAIN,
      `--endpoint=unix://${socketPath}`,
      "--node-id=test-node",
      `--state-dir=${options.stateDir ?? join(options.dir, "state")}`,
      `--health-addr=127.0.0.1:${port}`,
      `--kubeconfig=${options.kubeconfigPath}`,
      "--log-level=debug",
      ...(options.args ?? []),
    ],
    logPath: join(options.dir, options.logName ?? "driver.log"),
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
