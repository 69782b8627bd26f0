/**
 * Finds the `denort` runtime `deno compile` needs, in the order Deno itself looks
 * (denoland/deno `cli/standalone/binary.rs`): `DENORT_BIN`, then the zip in Deno's cache
 * (`$DENO_DIR/dl/release/v<version>/denort-<target>.zip`), then a download from dl.deno.land.
 *
 * @module
 */

import { join } from "node:path";

/** Where a usable denort was found. */
export type DenortSource =
  | { kind: "env"; path: string }
  | { kind: "cache"; path: string }
  | { kind: "network"; url: string };

/** The outcome of {@link findDenort}: a source, or every place tried and why it failed. */
export type DenortLookup =
  | { found: true; source: DenortSource; tried: string[] }
  | { found: false; tried: string[] };

/** Inputs of {@link findDenort}; every field has a default taken from the running Deno. */
export interface DenortLookupOptions {
  /** Deno version whose denort is needed (default: the running Deno's). */
  version?: string;
  /** Target triple (default: `Deno.build.target`). */
  target?: string;
  /** Value of `DENORT_BIN` (default: the environment's). */
  denortBin?: string;
  /** Deno's cache directory (default: `deno info --json` → `denoDir`). */
  denoDir?: string;
  /** Base URL of Deno's release downloads (default: `https://dl.deno.land`). */
  downloadBase?: string;
  /** How long the download probe may take (default 5000 ms). */
  probeTimeoutMs?: number;
}

/** The zip file name Deno caches for a target, e.g. `denort-x86_64-unknown-linux-gnu.zip`. */
export function denortZipName(target: string): string {
  return `denort-${target}.zip`;
}

/** Deno's cache directory as the running Deno reports it. */
export async function denoDir(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { denoDir?: string };
  if (!out.success || !info.denoDir) throw new Error("`deno info --json` did not report denoDir");
  return info.denoDir;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function probe(url: string, timeoutMs: number): Promise<string | undefined> {
  try {
    const res = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.ok ? undefined : `HTTP ${res.status}`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * Looks for denort without changing anything. A `DENORT_BIN` that exists is taken as is: whether
 * it really is denort (and not, say, the `deno` binary) is only visible by running the result.
 */
export async function findDenort(options: DenortLookupOptions = {}): Promise<DenortLookup> {
  const version = options.version ?? Deno.version.deno;
  const target = options.target ?? Deno.build.target;
  const tried: string[] = [];

  const bin = options.denortBin ?? Deno.env.get("DENORT_BIN");
  if (bin) {
    if (await isFile(bin)) return { found: true, source: { kind: "env", path: bin }, tried };
    tried.push(`DENORT_BIN=${bin}: no such file`);
  } else {
    tried.push("DENORT_BIN: not set");
  }

  const dir = options.denoDir ?? await denoDir();
  const cached = join(dir, "dl", "release", `v${version}`, denortZipName(target));
  if (await isFile(cached)) return { found: true, source: { kind: "cache", path: cached }, tried };
  tried.push(`${cached}: not in Deno's cache`);

  const base = (options.downloadBase ?? "https://dl.deno.land").replace(/\/+$/, "");
  const url = `${base}/release/v${version}/${denortZipName(target)}`;
  const failure = await probe(url, options.probeTimeoutMs ?? 5_000);
  if (failure === undefined) return { found: true, source: { kind: "network", url }, tried };
  tried.push(`${url}: ${failure}`);
  return { found: false, tried };
}
