/**
 * Runs spiffe-helper in daemon mode against a SPIRE agent, writing `svid.pem`, `svid_key.pem`
 * and `svid_bundle.pem` into a directory, as the sidecar does in a pod.
 *
 * @module
 */

import { join } from "node:path";
import { type ManagedProcess, startProcess, waitFor } from "./process.ts";
import { toolPath } from "./tools.ts";

/** The file names spiffe-helper is configured with. */
export const SVID_FILE_NAMES = {
  svid: "svid.pem",
  key: "svid_key.pem",
  bundle: "svid_bundle.pem",
} as const;

/** Options for {@link runSpiffeHelper}. */
export interface SpiffeHelperOptions {
  /** The agent's Workload API socket, a plain path (spiffe-helper adds `unix://`). */
  agentSocketPath: string;
  /** Directory the files are written to (created if missing). */
  certDir: string;
  /** Selects the SVID of the entry with this hint when several match. */
  hint?: string;
  /** `add_intermediates_to_bundle`. */
  addIntermediatesToBundle?: boolean;
  /** `omit_expired`. */
  omitExpired?: boolean;
  /** Directory for the config file and log (default: a new temporary directory). */
  workDir?: string;
}

/** A running spiffe-helper. */
export interface SpiffeHelper {
  /** Paths of the three files it writes. */
  files: { svid: string; key: string; bundle: string };
  /** Path of its log (stdout + stderr). */
  logPath: string;
  /** The underlying process. */
  process: ManagedProcess;
  /**
   * Resolves once all three files exist and are non-empty; rejects if spiffe-helper exits or
   * the timeout (default 60 s) passes.
   */
  waitForFiles(timeoutMs?: number): Promise<void>;
  /** Stops spiffe-helper and removes its work directory if it created one (not `certDir`). */
  stop(): Promise<void>;
}

async function nonEmpty(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).size > 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Writes spiffe-helper's HCL config and starts it in daemon mode.
 * Needs the `spiffe-helper` tool.
 *
 * @throws {ToolMissingError} when the binary is not built
 */
export async function runSpiffeHelper(options: SpiffeHelperOptions): Promise<SpiffeHelper> {
  const program = toolPath("spiffe-helper");
  const ownWorkDir = options.workDir === undefined;
  const workDir = options.workDir ?? await Deno.makeTempDir({ prefix: "spire-cacerts-helper-" });
  await Deno.mkdir(options.certDir, { recursive: true });
  const q = (value: string) => JSON.stringify(value);
  const lines = [
    `agent_address = ${q(options.agentSocketPath)}`,
    `cert_dir = ${q(options.certDir)}`,
    `svid_file_name = ${q(SVID_FILE_NAMES.svid)}`,
    `svid_key_file_name = ${q(SVID_FILE_NAMES.key)}`,
    `svid_bundle_file_name = ${q(SVID_FILE_NAMES.bundle)}`,
    `daemon_mode = true`,
    ...(options.hint === undefined ? [] : [`hint = ${q(options.hint)}`]),
    ...(options.addIntermediatesToBundle === undefined
      ? []
      : [`add_intermediates_to_bundle = ${options.addIntermediatesToBundle}`]),
    ...(options.omitExpired === undefined ? [] : [`omit_expired = ${options.omitExpired}`]),
  ];
  const configPath = join(workDir, "helper.conf");
  await Deno.writeTextFile(configPath, lines.join("\n") + "\n");
  const proc = startProcess({
    name: "spiffe-helper",
    program,
    args: ["-config", configPath],
    logPath: join(workDir, "spiffe-helper.log"),
  });
  const files = {
    svid: join(options.certDir, SVID_FILE_NAMES.svid),
    key: join(options.certDir, SVID_FILE_NAMES.key),
    bundle: join(options.certDir, SVID_FILE_NAMES.bundle),
  };
  let stopped = false;
  return {
    files,
    logPath: proc.logPath,
    process: proc,
    async waitForFiles(timeoutMs = 60_000) {
      await waitFor(`spiffe-helper to write ${Object.values(files).join(", ")}`, async () => {
        for (const path of Object.values(files)) if (!(await nonEmpty(path))) return false;
        return true;
      }, {
        timeoutMs,
        intervalMs: 100,
        abort: () => proc.assertRunning(),
        detail: () => `spiffe-helper log:\n${proc.logTail()}`,
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await proc.stop();
      if (ownWorkDir) await Deno.remove(workDir, { recursive: true }).catch(() => {});
    },
  };
}
