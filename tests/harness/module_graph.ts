/**
 * The repository's own module graph as Deno sees it (`deno info --json`): which local module
 * imports which, including type-only imports and statically analysable dynamic `import()`s.
 *
 * ```ts
 * const graph = await moduleGraph(["csi/main.ts", "webhook/main.ts"]);
 * console.log(findCycles(graph));
 * ```
 *
 * @module
 */

import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand } from "./process.ts";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);

/** Thrown when `deno info` fails for an entry point. */
export class ModuleGraphError extends Error {
  /**
   * @param message which entry point and Deno's output
   * @param options the underlying failure
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ModuleGraphError";
  }
}

/** Local module (path relative to the root) to the local modules it imports. */
export type ModuleGraph = Map<string, Set<string>>;

interface DenoInfo {
  modules: {
    specifier: string;
    dependencies?: { code?: { specifier?: string }; type?: { specifier?: string } }[];
  }[];
}

function localPath(specifier: string | undefined): string | undefined {
  if (!specifier?.startsWith("file://")) return undefined;
  const path = relative(ROOT, fileURLToPath(specifier));
  return path.startsWith("..") ? undefined : path;
}

/**
 * The union of the local module graphs of `entries`.
 *
 * @param entries entry points relative to the repository root
 * @throws {ModuleGraphError} when Deno cannot resolve an entry point's graph
 */
export async function moduleGraph(entries: readonly string[]): Promise<ModuleGraph> {
  const graph: ModuleGraph = new Map();
  for (const entry of entries) {
    const out = await runCommand([Deno.execPath(), "info", "--json", entry], { cwd: ROOT });
    if (out.code !== 0) {
      throw new ModuleGraphError(`deno info --json ${entry} exited ${out.code}: ${out.stderr}`);
    }
    const info = JSON.parse(out.stdout) as DenoInfo;
    for (const module of info.modules) {
      const from = localPath(module.specifier);
      if (!from) continue;
      const edges = graph.get(from) ?? new Set<string>();
      graph.set(from, edges);
      for (const dependency of module.dependencies ?? []) {
        for (const specifier of [dependency.code?.specifier, dependency.type?.specifier]) {
          const to = localPath(specifier);
          if (to && to !== from) edges.add(to);
        }
      }
    }
  }
  return graph;
}

/**
 * Every import cycle of the graph, each as the modules of one strongly connected component
 * (Tarjan's algorithm), sorted.
 *
 * @param graph from {@link moduleGraph}
 */
export function findCycles(graph: ModuleGraph): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) cycles.push(component.sort());
    }
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return cycles;
}
