/**
 * A cgroup v1 memory cgroup for one test's child process: made under this process's own memory
 * cgroup, given a limit the way kubelet applies a container's `limits.memory` (memory and
 * memory+swap both capped, as on a node without swap), joined by a program from its first
 * instruction (see {@link MemoryCgroup.wrap}), read for usage, peak, limit hits and OOM kills,
 * and removed.
 *
 * ```ts
 * import { MemoryCgroup } from "./cgroup.ts";
 *
 * const cgroup = MemoryCgroup.create("load-test");
 * cgroup.setLimit(384 * 1024 * 1024);
 * const argv = cgroup.wrap(["deno", "run", "-A", "webhook/main.ts"]);
 * // ...spawn argv, run the load, then:
 * console.log(cgroup.stats().peakBytes);
 * await cgroup.remove();
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

/** Where the cgroup v1 memory hierarchy is mounted. */
export const MEMORY_CGROUP_MOUNT = "/sys/fs/cgroup/memory";

/** A memory cgroup could not be made, changed, read or removed. */
export class CgroupError extends Error {
  /**
   * Creates the error.
   *
   * @param message what failed, naming the cgroup file
   * @param options the underlying error, if any
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CgroupError";
  }
}

/** What a memory cgroup reports. */
export interface MemoryStats {
  /** Current usage (memory.usage_in_bytes), page cache included as the kernel counts it. */
  usageBytes: number;
  /** Highest usage since the cgroup was made (memory.max_usage_in_bytes). */
  peakBytes: number;
  /** The limit (memory.limit_in_bytes). */
  limitBytes: number;
  /**
   * How many times usage hit the memory limit (memory.failcnt). Some kernels (6.18 here) leave
   * it at 0 even across an OOM kill: a peak below the limit is the dependable "never hit it".
   */
  failcnt: number;
  /**
   * How many times memory+swap usage hit its limit (memory.memsw.failcnt; 0 without swap
   * accounting). With both limits equal the kernel may count a hit here and not in `failcnt`.
   */
  memswFailcnt: number;
  /** Processes the OOM killer killed in this cgroup (memory.oom_control `oom_kill`). */
  oomKills: number;
  /** Whether the cgroup is under OOM right now (memory.oom_control `under_oom`). */
  underOom: boolean;
}

/** The fields of a memory.oom_control text. */
export interface OomControl {
  /** `oom_kill_disable`. */
  oomKillDisable: boolean;
  /** `under_oom`. */
  underOom: boolean;
  /** `oom_kill` (kernels ≥ 4.13; 0 when the line is absent). */
  oomKill: number;
}

/**
 * Parses a memory.oom_control text (`key value` lines).
 *
 * @param text the file's content
 * @throws {CgroupError} when `under_oom` is missing
 */
export function parseOomControl(text: string): OomControl {
  const fields = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined) fields.set(key, Number(value));
  }
  if (!fields.has("under_oom")) {
    throw new CgroupError(`memory.oom_control without under_oom: ${JSON.stringify(text)}`);
  }
  return {
    oomKillDisable: fields.get("oom_kill_disable") === 1,
    underOom: fields.get("under_oom") === 1,
    oomKill: fields.get("oom_kill") ?? 0,
  };
}

/**
 * The directory of this process's own cgroup v1 memory cgroup (from /proc/self/cgroup).
 *
 * @throws {CgroupError} when there is no cgroup v1 memory controller
 */
export function ownMemoryCgroup(): string {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/cgroup");
  } catch (error) {
    throw new CgroupError("cannot read /proc/self/cgroup", { cause: error });
  }
  const line = text.split("\n").find((l) => l.split(":")[1]?.split(",").includes("memory"));
  if (line === undefined) {
    throw new CgroupError(
      `no cgroup v1 memory controller in /proc/self/cgroup:\n${text.trim()}`,
    );
  }
  const path = line.split(":").slice(2).join(":");
  return join(MEMORY_CGROUP_MOUNT, path);
}

/** A cgroup v1 memory cgroup this process made. */
export class MemoryCgroup {
  /** Its directory under {@link MEMORY_CGROUP_MOUNT}. */
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  /**
   * Makes a new memory cgroup, by default under this process's own one (so the machinery's
   * limits above still apply), named `<name>-<random>`.
   *
   * @param name a prefix for the directory name
   * @param parent the parent cgroup directory (default {@link ownMemoryCgroup})
   * @throws {CgroupError} when the directory cannot be made (not root, no memory controller)
   */
  static create(name: string, parent: string = ownMemoryCgroup()): MemoryCgroup {
    const path = join(parent, `${name}-${crypto.randomUUID().slice(0, 8)}`);
    try {
      Deno.mkdirSync(path);
    } catch (error) {
      throw new CgroupError(`cannot create memory cgroup ${path}`, { cause: error });
    }
    return new MemoryCgroup(path);
  }

  #write(file: string, value: string): void {
    try {
      Deno.writeTextFileSync(join(this.path, file), value);
    } catch (error) {
      throw new CgroupError(`cannot write ${value} to ${join(this.path, file)}`, {
        cause: error,
      });
    }
  }

  #read(file: string): string {
    try {
      return Deno.readTextFileSync(join(this.path, file));
    } catch (error) {
      throw new CgroupError(`cannot read ${join(this.path, file)}`, { cause: error });
    }
  }

  #hasMemsw(): boolean {
    try {
      Deno.statSync(join(this.path, "memory.memsw.limit_in_bytes"));
      return true;
    } catch {
      return false;
    }
  }

  #number(file: string): number {
    const text = this.#read(file).trim();
    const value = Number(text);
    if (!Number.isFinite(value)) {
      throw new CgroupError(`${join(this.path, file)}: not a number: ${JSON.stringify(text)}`);
    }
    return value;
  }

  /**
   * Limits memory to `bytes`, and memory+swap too where swap accounting exists (a container
   * limit on a node without swap: exceeding it means reclaim, then the OOM killer).
   *
   * @param bytes the limit
   * @throws {CgroupError}
   */
  setLimit(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw new CgroupError(`memory limit must be a positive integer, got ${bytes}`);
    }
    // memsw must stay ≥ the memory limit: lower memory first, raise memsw first.
    const hasMemsw = this.#hasMemsw();
    const current = this.#number("memory.limit_in_bytes");
    if (hasMemsw && bytes > current) this.#write("memory.memsw.limit_in_bytes", String(bytes));
    this.#write("memory.limit_in_bytes", String(bytes));
    if (hasMemsw) this.#write("memory.memsw.limit_in_bytes", String(bytes));
  }

  /**
   * Moves a running process into this cgroup. Memory it allocated before stays charged where it
   * was; use {@link wrap} to have a program start inside.
   *
   * @param pid the process
   * @throws {CgroupError}
   */
  addPid(pid: number): void {
    this.#write("cgroup.procs", String(pid));
  }

  /**
   * A command line that runs `argv` inside this cgroup from its first instruction: a shell joins
   * the cgroup, then execs the program (same pid, so signals reach the program itself).
   *
   * @param argv program and arguments
   * @returns the wrapped command line
   */
  wrap(argv: readonly string[]): string[] {
    return [
      "/bin/sh",
      "-c",
      'echo $$ > "$0" && exec "$@"',
      join(this.path, "cgroup.procs"),
      ...argv,
    ];
  }

  /**
   * Starts {@link MemoryStats.peakBytes} over from the current usage (writes 0 to
   * memory.max_usage_in_bytes), to take the peak of one phase.
   *
   * @throws {CgroupError}
   */
  resetPeak(): void {
    this.#write("memory.max_usage_in_bytes", "0");
  }

  /** Pids of the processes in this cgroup. */
  pids(): number[] {
    return this.#read("cgroup.procs").split("\n").filter(Boolean).map(Number);
  }

  /** Usage, peak, limit, limit hits and OOM kills. @throws {CgroupError} */
  stats(): MemoryStats {
    const oom = parseOomControl(this.#read("memory.oom_control"));
    return {
      usageBytes: this.#number("memory.usage_in_bytes"),
      peakBytes: this.#number("memory.max_usage_in_bytes"),
      limitBytes: this.#number("memory.limit_in_bytes"),
      failcnt: this.#number("memory.failcnt"),
      memswFailcnt: this.#hasMemsw() ? this.#number("memory.memsw.failcnt") : 0,
      oomKills: oom.oomKill,
      underOom: oom.underOom,
    };
  }

  /**
   * Removes the cgroup. Its processes must have exited; the kernel may take a moment to let go
   * of one that just did, so this retries for up to `timeoutMs`.
   *
   * @param timeoutMs how long to retry while the cgroup is busy (default 5 s)
   * @throws {CgroupError} when processes remain or the directory cannot be removed
   */
  async remove(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        Deno.removeSync(this.path);
        return;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return;
        if (Date.now() >= deadline) {
          let pids: number[] = [];
          try {
            pids = this.pids();
          } catch { /* the listing is only detail */ }
          throw new CgroupError(
            `cannot remove memory cgroup ${this.path}` +
              (pids.length ? ` (processes still in it: ${pids.join(", ")})` : ""),
            { cause: error },
          );
        }
        await delay(50);
      }
    }
  }
}
