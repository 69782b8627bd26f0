/**
 * The shipped webhook program (`webhook/main.ts`) as a child process on free loopback ports, the
 * way the suites and benchmarks that need the real program (signals, flags, start-up) run it, and
 * the serial a fresh TLS handshake with it gets.
 *
 * @module
 */

import { connect } from "node:tls";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePorts, type ManagedProcess, startProcess, waitFor } from "./process.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Options for {@link startWebhookProcess}. */
export interface WebhookProcessOptions {
  /** File receiving the program's output. */
  logPath: string;
  /** Flags after the ports and `--bind-address` (e.g. `--cert-dir`, `--controller=false`). */
  args?: readonly string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** A running webhook program. */
export interface WebhookProcess {
  /** The process. */
  process: ManagedProcess;
  /** Its HTTPS port. */
  port: number;
  /** Its plain-HTTP health port. */
  healthPort: number;
  /** `http://127.0.0.1:<healthPort>`. */
  health: string;
}

/** Starts `webhook/main.ts` with `--port`, `--health-port` and `--bind-address=127.0.0.1`. */
export function startWebhookProcess(options: WebhookProcessOptions): WebhookProcess {
  const [port, healthPort] = freePorts(2);
  const process = startProcess({
    name: "webhook",
    program: Deno.execPath(),
    args: [
      "run",
      "-A",
      join(ROOT, "webhook/main.ts"),
      `--port=${port}`,
      `--health-port=${healthPort}`,
      "--bind-address=127.0.0.1",
      ...(options.args ?? []),
    ],
    logPath: options.logPath,
    env: options.env,
    cwd: ROOT,
  });
  return { process, port, healthPort, health: `http://127.0.0.1:${healthPort}` };
}

/**
 * Waits until the health port answers `path` with `status` (`/readyz` 200: serving HTTPS with a
 * valid SVID); fails at once if the process exits, with its last output.
 */
export async function waitForWebhook(
  webhook: WebhookProcess,
  { path = "/readyz", status = 200, timeoutMs = 60_000 } = {},
): Promise<void> {
  await waitFor(`webhook ${path} ${status}`, async () => {
    try {
      const response = await fetch(`${webhook.health}${path}`);
      await response.body?.cancel();
      return response.status === status;
    } catch {
      return false;
    }
  }, {
    timeoutMs,
    abort: () => webhook.process.assertRunning(),
    detail: () => webhook.process.logTail(20),
  });
}

/** Serial of the certificate a fresh TLS handshake gets, verified against `ca` for `localhost`. */
export function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ca }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.on("error", reject);
  });
}
