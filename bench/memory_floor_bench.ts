/**
 * The memory floor under the programs' idle figures, in three steps, each against a baseline
 * measured in the same run:
 *
 * 1. **One library.** VmRSS of an idle Deno process that only imports one library a program
 *    loads at start-up, against a bare idle Deno process (~64 MB here: most of the 80 MB idle
 *    budget is the runtime). Each npm library is imported twice: by its name, the way the
 *    programs import it under `deno run`, and by its entry file in `node_modules/`, which loads
 *    the same code without the npm resolver.
 * 2. **One program's imports.** Per program: all the npm packages and `node:` built-ins it loads
 *    at start-up (bench/runtime_imports.ts, from `deno info`) imported together, against the
 *    bare process; then its whole module graph imported without starting it (`main()` runs only
 *    under `import.meta.main`), against those libraries: the difference is the project's own
 *    code.
 * 3. **The webhook running.** `webhook/main.ts --controller=false` serving, idle, against its
 *    graph imported but not started: the difference is what serving holds (TLS context, sockets,
 *    the SVID watch). The CSI driver's running figure needs an apiserver: see publish_bench.ts
 *    (`mem.driver.idle`).
 *
 * Why `hono` alone costs more than `node:https` (+17–18 MB against +2–3 MB; Deno 2.8.3,
 * 2026-12-01): not the Node compatibility layer, which a trivial npm package (`reflect-metadata`,
 * one CommonJS file) shows costs 1–1.5 MB, and not hono's code, which imported by its entry file
 * costs under 1 MB. Under `deno run` the npm resolver reads the registry metadata of every npm
 * package the program names from the cache (`…/registry.npmjs.org/<name>/registry.json`, seen
 * with `strace -e openat` right after the import; the JS heap stays the same, RssAnon grows
 * within ~1 s), and hono publishes so many versions that its file is 3.5 MB (grpc-js 0.2 MB,
 * the Kubernetes client 0.07 MB): ~16 MB resident. For the webhook that is most of the gap
 * between its start-up libraries imported by name and by file (104 against 85 MB on 2026-12-01).
 * A `deno compile`d binary resolves at build time and should not pay it (not measured: the
 * compile path does not run here).
 *
 * One sample per figure per run; repeated single runs differ by 1–2 MB (up to 4 MB for the
 * Kubernetes client, whose import peaks near 127 MB before it settles), so compare medians over
 * `deno task bench`'s runs, not one run's small differences.
 *
 * ```sh
 * ./scripts/deno run -A bench/memory_floor_bench.ts
 * ```
 *
 * Each process is read 1.5 s after its imports finished (bench/proc.ts `loadedIdleRssMB`).
 * Prints `BENCH {json}` lines (bench/report.ts).
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { benchLine } from "./report.ts";
import { loadedIdleRssMB, readRss } from "./proc.ts";
import { type RuntimeImports, runtimeImports } from "./runtime_imports.ts";
import { setTimeout as delay } from "node:timers/promises";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BARE = "bare Deno process, idle";

/** A library measured alone: what to import first (a polyfill it needs) and itself. */
interface Library {
  /** Import-map name, or a `node:` built-in. */
  specifier: string;
  /** Imported before it, as the project does (`x509/x509.ts` imports reflect-metadata first). */
  before?: string[];
  /** What it stands for in the table, besides being a dependency. */
  note?: string;
}

/**
 * Libraries measured whether or not a program loads them at start-up, and how. Every npm package
 * some program loads at start-up is measured too (found by bench/runtime_imports.ts, so a new
 * dependency appears in the table without an edit here).
 */
const KNOWN_LIBRARIES: Library[] = [
  { specifier: "@kubernetes/client-node" },
  { specifier: "@peculiar/x509", before: ["reflect-metadata"] },
  {
    specifier: "reflect-metadata",
    note: "a trivial npm package (one CommonJS file): the npm resolver and Node compat alone",
  },
  { specifier: "node:https" },
];

/** {@link KNOWN_LIBRARIES} and every npm package the programs load at start-up, npm first. */
function librariesToMeasure(imports: Map<string, RuntimeImports>): Library[] {
  const known = new Map(KNOWN_LIBRARIES.map((l) => [l.specifier, l]));
  const names = new Set([...imports.values()].flatMap((i) => i.npm));
  for (const l of KNOWN_LIBRARIES) names.add(l.specifier);
  const sorted = [...names].sort((a, b) =>
    Number(a.startsWith("node:")) - Number(b.startsWith("node:")) || a.localeCompare(b)
  );
  return sorted.map((specifier) => known.get(specifier) ?? { specifier });
}

/** The programs, by entry point. */
const PROGRAMS: { name: string; entry: string }[] = [
  { name: "CSI driver", entry: "csi/main.ts" },
  { name: "webhook", entry: "webhook/main.ts" },
  { name: "example server", entry: "workloads/server.ts" },
  { name: "example client", entry: "workloads/client.ts" },
];

/** A package's entry file could not be found in `node_modules/`. */
class PackageEntryError extends Error {
  /** @param name the package; @param options the underlying error */
  constructor(name: string, options?: ErrorOptions) {
    super(`no entry file for ${name} in ${join(ROOT, "node_modules")}`, options);
    this.name = "PackageEntryError";
  }
}

/**
 * The file Deno loads for `import "<name>"`: `exports["."]`'s `import` or `default` condition,
 * else `main`, as a path relative to the repository root.
 *
 * @throws {PackageEntryError} when the package is not installed under `node_modules/`
 */
function packageEntry(name: string): string {
  const dir = join("node_modules", name);
  type Conditions = { import?: string; default?: string };
  let manifest: { main?: string; exports?: string | Record<string, string | Conditions> };
  try {
    manifest = JSON.parse(Deno.readTextFileSync(join(ROOT, dir, "package.json")));
  } catch (error) {
    throw new PackageEntryError(name, { cause: error });
  }
  const dot = typeof manifest.exports === "string" ? manifest.exports : manifest.exports?.["."];
  const file = typeof dot === "string" ? dot : dot?.import ?? dot?.default ?? manifest.main;
  if (!file) throw new PackageEntryError(name);
  return "./" + join(dir, file);
}

/** The programs that load `specifier` at start-up. */
function usedBy(specifier: string, imports: Map<string, RuntimeImports>): string {
  const names = PROGRAMS.filter((p) => {
    const i = imports.get(p.entry)!;
    return i.npm.includes(specifier) || i.node.includes(specifier);
  }).map((p) => p.name);
  return names.length ? names.join(", ") : "no program at start-up";
}

/** `packages` with the polyfills other libraries need (their `before`) first. */
function importOrder(packages: string[]): string[] {
  const first = new Set(KNOWN_LIBRARIES.flatMap((l) => l.before ?? []));
  return [...packages.filter((p) => first.has(p)), ...packages.filter((p) => !first.has(p))];
}

/** RSS of `webhook/main.ts --controller=false` serving a localhost SVID, idle. */
async function runningWebhookRssMB(): Promise<number> {
  const { createCa, startWebhookProcess, waitForWebhook, writeLocalhostSvid } = await import(
    "../tests/harness/mod.ts"
  );
  const dir = await Deno.makeTempDir({ prefix: "memory-floor-" });
  const certDir = join(dir, "certs");
  await Deno.mkdir(certDir);
  const ca = await createCa(dir, "ca", "bench-spire-ca");
  await writeLocalhostSvid(ca, dir, certDir);
  const { process: webhook, ...ports } = startWebhookProcess({
    logPath: join(dir, "webhook.log"),
    args: ["--controller=false", `--cert-dir=${certDir}`, "--log-level=warn"],
  });
  try {
    await waitForWebhook({ process: webhook, ...ports });
    await delay(1500);
    return readRss(webhook.pid).rssMB;
  } finally {
    await webhook.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const imports = new Map<string, RuntimeImports>();
  for (const p of PROGRAMS) imports.set(p.entry, await runtimeImports(p.entry));
  const bare = await loadedIdleRssMB([]);

  const libraries = librariesToMeasure(imports);
  for (const lib of libraries) {
    const before = lib.before ?? [];
    const label = `import ${[...before, lib.specifier].join(" + ")} (${
      lib.note ? `${lib.note}; ` : ""
    }used by: ${usedBy(lib.specifier, imports)})`;
    console.log(benchLine({
      id: `mem.floor.${lib.specifier}`,
      section: "memory floor: idle Deno process importing one library",
      label,
      unit: "MB",
      value: await loadedIdleRssMB([...before, lib.specifier]),
      baseline: bare,
      baselineLabel: BARE,
    }));
  }
  for (const lib of libraries.filter((l) => !l.specifier.startsWith("node:"))) {
    const files = [...(lib.before ?? []), lib.specifier].map(packageEntry);
    console.log(benchLine({
      id: `mem.floor.code.${lib.specifier}`,
      section: "memory floor: the same library's code alone (entry file, no npm resolver)",
      label: `import ${files.join(" + ")}`,
      unit: "MB",
      value: await loadedIdleRssMB(files),
      baseline: bare,
      baselineLabel: BARE,
    }));
  }

  const graphs = new Map<string, number>();
  for (const p of PROGRAMS) {
    const i = imports.get(p.entry)!;
    const librariesMB = await loadedIdleRssMB([...i.node, ...importOrder(i.npm)]);
    console.log(benchLine({
      id: `mem.floor.program.${p.entry}.libraries`,
      section: "memory floor: each program's imports",
      label: `${p.name}: its start-up libraries (${i.npm.join(", ")}; ${i.node.length} node: ` +
        "built-ins)",
      unit: "MB",
      value: librariesMB,
      baseline: bare,
      baselineLabel: BARE,
    }));
    console.log(benchLine({
      id: `mem.floor.program.${p.entry}.library_code`,
      section: "memory floor: each program's imports",
      label: `${p.name}: the same libraries by entry file (no npm resolver)`,
      unit: "MB",
      value: await loadedIdleRssMB([...i.node, ...importOrder(i.npm).map(packageEntry)]),
      baseline: bare,
      baselineLabel: BARE,
    }));
    const graph = await loadedIdleRssMB([`./${p.entry}`]);
    graphs.set(p.entry, graph);
    console.log(benchLine({
      id: `mem.floor.program.${p.entry}.graph`,
      section: "memory floor: each program's imports",
      label: `${p.name}: its whole module graph (${p.entry} imported, not started)`,
      unit: "MB",
      value: graph,
      baseline: librariesMB,
      baselineLabel: "its libraries alone, same run",
    }));
  }
  console.log(benchLine({
    id: "mem.floor.program.webhook/main.ts.running",
    section: "memory floor: each program's imports",
    label: "webhook: running idle (--controller=false, serving a localhost SVID)",
    unit: "MB",
    value: await runningWebhookRssMB(),
    baseline: graphs.get("webhook/main.ts")!,
    baselineLabel: "its module graph imported, not started, same run",
  }));
}
