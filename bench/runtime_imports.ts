/**
 * What a program loads when it starts: the npm packages and `node:` built-ins reached from its
 * entry point through static imports (`deno info --json`). A dynamic `import()` inside a function
 * is left out, since it loads later or never (the CSI driver imports `@peculiar/x509` only for
 * `--self-test`); one in a top-level statement counts, since it runs when the module is
 * evaluated (`x509/x509.ts` is `export const x509 = await import("@peculiar/x509")`). Top level
 * is told apart by indentation, which `deno fmt` makes reliable: the import's line starts in
 * column 0. Type-only imports are left out too; Deno erases them.
 *
 * Used by bench/memory_floor_bench.ts to import exactly a program's libraries, without its own
 * code, and compare that with importing its whole module graph.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** `deno info --json` failed or printed something unexpected. */
export class RuntimeImportsError extends Error {
  /**
   * Creates the error.
   *
   * @param message what failed
   * @param options the underlying error
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RuntimeImportsError";
  }
}

/** The external modules a program's static import graph reaches. */
export interface RuntimeImports {
  /** npm package names as the import map spells them, e.g. `@kubernetes/client-node`. */
  npm: string[];
  /** `node:` built-ins, e.g. `node:https`. */
  node: string[];
}

/** The part of `deno info --json`'s output this module reads. */
export interface DenoInfo {
  /** The entry points' specifiers. */
  roots: string[];
  /** Every module of the graph with its dependencies. */
  modules: {
    specifier: string;
    dependencies?: {
      code?: { specifier?: string; span?: { start: { line: number } } };
      isDynamic?: boolean;
    }[];
  }[];
}

/** Reads one line (0-based) of a local module, or undefined when it cannot. */
export type LineReader = (specifier: string, line: number) => string | undefined;

function readLocalLine(specifier: string, line: number): string | undefined {
  try {
    return Deno.readTextFileSync(fileURLToPath(specifier)).split("\n")[line];
  } catch {
    return undefined;
  }
}

/**
 * The package name in an npm specifier as `deno info` prints it:
 * `npm:@grpc/grpc-js@1.14.7` → `@grpc/grpc-js`, `npm:/hono@4.13.19/http-exception` → `hono`.
 */
export function npmPackageName(specifier: string): string {
  const rest = specifier.replace(/^npm:\/?/, "");
  const parts = rest.split("/");
  const name = rest.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
  const at = name.lastIndexOf("@");
  return at > 0 ? name.slice(0, at) : name;
}

/**
 * Walks the start-up imports (static, and dynamic in a top-level statement) of a parsed
 * `deno info --json` from its roots through local (`file:`) modules and collects the npm
 * packages and built-ins they import.
 *
 * @param info the parsed output
 * @param readLine reads a line of a local module (default: from disk)
 */
export function startupExternalImports(
  info: DenoInfo,
  readLine: LineReader = readLocalLine,
): RuntimeImports {
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const npm = new Set<string>();
  const node = new Set<string>();
  const queue = [...info.roots];
  while (queue.length) {
    const specifier = queue.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of modules.get(specifier)?.dependencies ?? []) {
      const target = dependency.code?.specifier;
      if (!target) continue;
      if (dependency.isDynamic) {
        const line = dependency.code?.span?.start.line;
        const text = line === undefined ? undefined : readLine(specifier, line);
        if (text === undefined || !/^\S/.test(text)) continue;
      }
      if (target.startsWith("npm:")) npm.add(npmPackageName(target));
      else if (target.startsWith("node:")) node.add(target);
      else if (target.startsWith("file:")) queue.push(target);
    }
  }
  return { npm: [...npm].sort(), node: [...node].sort() };
}

/**
 * The npm packages and built-ins `entry` (relative to the repository root) loads at start-up.
 *
 * @throws {RuntimeImportsError} when `deno info` fails or prints no graph
 */
export async function runtimeImports(entry: string): Promise<RuntimeImports> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new RuntimeImportsError(
      `deno info --json ${entry} exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  let info: DenoInfo;
  try {
    info = JSON.parse(new TextDecoder().decode(out.stdout)) as DenoInfo;
  } catch (error) {
    throw new RuntimeImportsError(`deno info --json ${entry} printed no JSON`, { cause: error });
  }
  if (!Array.isArray(info.roots) || !Array.isArray(info.modules)) {
    throw new RuntimeImportsError(`deno info --json ${entry}: no roots/modules`);
  }
  return startupExternalImports(info);
}
