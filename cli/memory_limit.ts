/**
 * The container's memory limit (cgroup v2 `memory.max`, else cgroup v1
 * `memory.limit_in_bytes`) against V8's heap limit (`node:v8` `getHeapStatistics()`), so a
 * program can say at start that its heap may grow past the limit the kernel OOM-kills it at.
 *
 * Why a warning and not a computed heap: V8 fixes its heap limit before any JavaScript runs, so
 * the heap is sized by flags (`DENO_V8_FLAGS`, or `deno compile --v8-flags`; see
 * `heap_flags.ts`). Without them Deno's heap limit is 4192 MB on this 64-bit build, eleven times a
 * 384Mi container limit; a program started without the flags is the case worth a log line.
 *
 * The one-line hook for a program's start:
 *
 * ```ts
 * import { heapLimitWarning } from "./memory_limit.ts";
 * const warning = heapLimitWarning();
 * if (warning) console.warn(warning);
 * ```
 *
 * @module
 */

import { getHeapStatistics } from "node:v8";

/** Where the cgroup v2 hierarchy is mounted; its `memory.max` holds the limit (`max`: none). */
export const CGROUP_V2_MOUNT = "/sys/fs/cgroup";
/** Where the cgroup v1 memory controller is mounted; `memory.limit_in_bytes` holds the limit. */
export const CGROUP_V1_MEMORY_MOUNT = "/sys/fs/cgroup/memory";

/**
 * cgroup v1 reports "no limit" as `PAGE_COUNTER_MAX` pages (9223372036854771712 bytes with 4 KiB
 * pages); anything at or above 2^62 bytes is no limit.
 */
const NO_LIMIT_ABOVE = 2 ** 62;

/** A cgroup limit file exists but does not hold a limit. */
export class MemoryLimitError extends Error {
  /**
   * Creates an instance.
   *
   * @param path the file read
   * @param message what is wrong with it
   * @param options the underlying error
   */
  constructor(readonly path: string, message: string, options?: ErrorOptions) {
    super(`${path}: ${message}`, options);
    this.name = "MemoryLimitError";
  }
}

function readIfPresent(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw new MemoryLimitError(path, "cannot be read", { cause: error });
  }
}

/**
 * The files that may hold this process's limit, most specific first: its own cgroup (from
 * `/proc/self/cgroup`; what a host or a container without a cgroup namespace sees), then the
 * mount's root (what a container with its own cgroup namespace, or a v1 bind mount, sees).
 */
function limitFiles(root: string): string[] {
  const at = (path: string) => `${root.replace(/\/$/, "")}${path}`;
  let v2Own: string | undefined;
  let v1Own: string | undefined;
  for (const line of (readIfPresent(at("/proc/self/cgroup")) ?? "").split("\n")) {
    const [, controllers, path] = line.match(/^\d+:([^:]*):(.*)$/) ?? [];
    if (path === undefined || path === "/") continue;
    if (controllers === "") v2Own = at(`${CGROUP_V2_MOUNT}${path}/memory.max`);
    else if (controllers.split(",").includes("memory")) {
      v1Own = at(`${CGROUP_V1_MEMORY_MOUNT}${path}/memory.limit_in_bytes`);
    }
  }
  return [
    v2Own,
    v1Own,
    at(`${CGROUP_V2_MOUNT}/memory.max`),
    at(`${CGROUP_V1_MEMORY_MOUNT}/memory.limit_in_bytes`),
  ].filter((path): path is string => path !== undefined);
}

/**
 * The container's memory limit in bytes, or undefined when there is none (no cgroup file, `max`,
 * or cgroup v1's "unlimited"). The first of these that exists holds it: cgroup v2 `memory.max`
 * and cgroup v1 `memory.limit_in_bytes` of the process's own cgroup, then of the mounts' roots.
 *
 * @param root the file system root to read under (tests point it at a fixture)
 * @throws {MemoryLimitError} when a limit file is unreadable or holds something else
 */
export function readMemoryLimit(root = "/"): number | undefined {
  for (const path of limitFiles(root)) {
    const text = readIfPresent(path)?.trim();
    if (text === undefined) continue;
    if (text === "max") return undefined;
    if (!/^\d+$/.test(text)) {
      throw new MemoryLimitError(path, `expected a number of bytes or "max", got "${text}"`);
    }
    const bytes = Number(text);
    return bytes >= NO_LIMIT_ABOVE ? undefined : bytes;
  }
  return undefined;
}

/** V8's heap limit in bytes (old space plus young generation), as the flags set it. */
export function heapLimitBytes(): number {
  return getHeapStatistics().heap_size_limit;
}

const MiB = 1024 * 1024;

/**
 * A warning when the V8 heap limit is at or above the container's memory limit (the heap alone
 * could then reach the OOM kill), or undefined when it fits or there is no limit.
 *
 * @param limit the container limit in bytes (default: {@link readMemoryLimit})
 * @param heap the heap limit in bytes (default: {@link heapLimitBytes})
 */
export function heapLimitWarning(
  limit: number | undefined = readMemoryLimit(),
  heap: number = heapLimitBytes(),
): string | undefined {
  if (limit === undefined || heap < limit) return undefined;
  return `V8 heap limit ${Math.round(heap / MiB)} MiB is not below the container memory limit ` +
    `${Math.round(limit / MiB)} MiB: set DENO_V8_FLAGS (or deno compile --v8-flags) from ` +
    `heap_flags.ts`;
}
