/**
 * What the benchmarks read from `/proc`: a process's resident memory and the machine's
 * description for `docs/benchmarks.md`.
 *
 * @module
 */

import type { MachineInfo } from "./report.ts";
import { setTimeout as delay } from "node:timers/promises";

/** Resident memory of one process, in MB (10^6 bytes). */
export interface Rss {
  /** Current resident set (VmRSS). */
  rssMB: number;
  /** Peak resident set since start (VmHWM). */
  hwmMB: number;
}

/** The process has no readable `/proc/<pid>/status` (it exited, or this is not Linux). */
export class ProcStatusError extends Error {
  /** @param pid the process; @param cause what went wrong */
  constructor(readonly pid: number, cause: string) {
    super(`cannot read /proc/${pid}/status: ${cause}`);
    this.name = "ProcStatusError";
  }
}

/** Parses VmRSS and VmHWM (kB) out of a `/proc/<pid>/status` text. */
export function parseStatus(text: string): Rss | undefined {
  const kb = (key: string) => {
    const m = text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) : undefined;
  };
  const rss = kb("VmRSS");
  const hwm = kb("VmHWM");
  if (rss === undefined || hwm === undefined) return undefined;
  return { rssMB: (rss * 1024) / 1e6, hwmMB: (hwm * 1024) / 1e6 };
}

/**
 * Reads VmRSS and VmHWM of `pid`.
 *
 * @throws {ProcStatusError}
 */
export function readRss(pid: number): Rss {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch (e) {
    throw new ProcStatusError(pid, (e as Error).message);
  }
  const rss = parseStatus(text);
  if (!rss) throw new ProcStatusError(pid, "no VmRSS/VmHWM lines");
  return rss;
}

function readOr(path: string, fallback = ""): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return fallback;
  }
}

/** Describes this machine; `loadAfter` is filled with the current load until updated. */
export function machineInfo(): MachineInfo {
  const cpu = readOr("/proc/cpuinfo").match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ??
    Deno.build.arch;
  const memKb = Number(readOr("/proc/meminfo").match(/^MemTotal:\s+(\d+) kB/m)?.[1] ?? 0);
  const os = readOr("/etc/os-release").match(/^PRETTY_NAME="?([^"\n]+)"?$/m)?.[1] ??
    Deno.build.os;
  const load = Deno.loadavg();
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryMiB: Math.round(memKb / 1024),
    os,
    kernel: Deno.osRelease(),
    deno: `deno ${Deno.version.deno}, V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript}`,
    loadBefore: load,
    loadAfter: load,
  };
}

/**
 * VmRSS (MB) of a bare Deno process that does nothing: the floor every program in this project
 * starts from, used as the baseline of the idle memory figures.
 */
export function bareDenoRssMB(settleMs = 2000): Promise<number> {
  return idleRssMB([], settleMs);
}

/**
 * VmRSS (MB) of an idle Deno process that has imported `specifiers` (resolved with this
 * project's import map) and does nothing else.
 */
export async function idleRssMB(specifiers: string[], settleMs = 2000): Promise<number> {
  const imports = specifiers.map((s) => `await import(${JSON.stringify(s)});`).join(" ");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", `${imports} setInterval(() => {}, 1e9)`],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await delay(settleMs);
    return readRss(child.pid).rssMB;
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

/** The measured process exited before it printed that its imports were loaded. */
export class IdleProcessError extends Error {
  /**
   * Creates the error.
   *
   * @param message what happened, with the process's stderr
   * @param options the cause
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "IdleProcessError";
  }
}

/**
 * VmRSS (MB) of an idle Deno process `settleMs` after it finished importing `specifiers`
 * (resolved with this project's import map, in order) — unlike {@link idleRssMB}, which reads at
 * a fixed time after the spawn, the clock starts only once the imports are done, so a slow
 * import (the Kubernetes client takes ~0.5 s, a program's whole graph over 1 s) is not caught
 * half-loaded. 1.5 s is enough for the post-load growth seen here (the npm resolver reading
 * package metadata, within ~1 s of the import) to have happened; RSS is flat after it.
 *
 * @throws {IdleProcessError} when the process exits before its imports finish
 */
export async function loadedIdleRssMB(specifiers: string[], settleMs = 1500): Promise<number> {
  const imports = specifiers.map((s) => `await import(${JSON.stringify(s)});`).join(" ");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", `${imports} console.log("loaded"); setInterval(() => {}, 1e9)`],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    const reader = child.stdout.getReader();
    const first = await reader.read();
    reader.releaseLock();
    if (first.done) {
      const { code } = await child.status;
      throw new IdleProcessError(
        `importing ${specifiers.join(", ")} failed (exit ${code}): ${(await stderr).trim()}`,
      );
    }
    await delay(settleMs);
    return readRss(child.pid).rssMB;
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await stderr;
  }
}
