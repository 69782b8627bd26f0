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
