/**
 * Where the Go-built components live and how tests declare that they need them.
 *
 * The binaries are built by `tests/tools/build.sh` (`./scripts/deno task tools`) into
 * `${SPIRE_CACERTS_TOOLS_DIR:-$HOME/.cache/spire-cacerts/tools}/bin`, outside the repository.
 *
 * @module
 */

import { join } from "node:path";

/** The command that builds every tool, as a user should type it. */
export const BUILD_COMMAND = "./scripts/deno task tools";

/** Names of the binaries `tests/tools/build.sh` produces. */
export type ToolName =
  | "kube-apiserver"
  | "kubectl"
  | "kubelet"
  | "kube-controller-manager"
  | "kube-scheduler"
  | "kube-proxy"
  | "etcd"
  | "spire-server"
  | "spire-agent"
  | "spiffe-helper"
  | "csi-sanity"
  | "csc"
  | "csi-churn"
  | "admission-client";

/** Thrown when a test needs a binary that has not been built. */
export class ToolMissingError extends Error {
  /** The binary that is missing. */
  readonly tool: string;
  /** Where it was looked for. */
  readonly path: string;

  /**
   * Creates the error for a missing binary.
   *
   * @param tool name of the binary
   * @param path absolute path where it was expected
   */
  constructor(tool: string, path: string) {
    super(
      `${tool} is not built: expected an executable at ${path}. ` +
        `Build the test tools with \`${BUILD_COMMAND}\` (runs tests/tools/build.sh; ` +
        `set SPIRE_CACERTS_TOOLS_DIR to use another directory).`,
    );
    this.name = "ToolMissingError";
    this.tool = tool;
    this.path = path;
  }
}

/**
 * The directory holding the built binaries:
 * `${SPIRE_CACERTS_TOOLS_DIR:-$HOME/.cache/spire-cacerts/tools}/bin`.
 */
export function toolsBinDir(): string {
  const root = Deno.env.get("SPIRE_CACERTS_TOOLS_DIR") ||
    join(Deno.env.get("HOME") ?? "/root", ".cache", "spire-cacerts", "tools");
  return join(root, "bin");
}

function isExecutableFile(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.mode !== null && (info.mode & 0o111) !== 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Absolute path of a built tool.
 *
 * @param name binary name, e.g. `"kube-apiserver"`
 * @returns the absolute path of an executable file
 * @throws {ToolMissingError} when the binary is missing, naming it and the build command
 */
export function toolPath(name: ToolName): string {
  const path = join(toolsBinDir(), name);
  if (!isExecutableFile(path)) throw new ToolMissingError(name, path);
  return path;
}

/** Whether a tool has been built. */
export function hasTool(name: ToolName): boolean {
  return isExecutableFile(join(toolsBinDir(), name));
}

/** Whether this run is CI (`CI=true`), where a missing tool must fail the run. */
export function isCi(): boolean {
  const value = Deno.env.get("CI")?.toLowerCase();
  return value === "true" || value === "1";
}

/** Options to spread into `Deno.test` for a test that runs real components. */
export interface ToolRequirement {
  /** True only outside CI when a tool is missing: the test is then reported as ignored. */
  ignore: boolean;
}

/**
 * Declares the tools a test needs. Outside CI a missing tool makes the test ignored; with
 * `CI=true` it never ignores, so the test runs and fails through {@link toolPath}'s
 * {@link ToolMissingError}.
 *
 * ```ts
 * Deno.test({ name: "apiserver", ...needsTools(["kube-apiserver", "etcd"]), fn: async () => {} });
 * ```
 *
 * @param names binaries the test runs
 */
export function needsTools(names: readonly ToolName[]): ToolRequirement {
  if (isCi()) return { ignore: false };
  return { ignore: names.some((name) => !hasTool(name)) };
}
