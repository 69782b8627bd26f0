/**
 * The CSI driver loads only what it uses. From `deno info --json csi/main.ts`, the modules
 * reachable through static imports (what Deno loads at start-up) and the npm packages those pull
 * in, with their own dependencies:
 *
 * - hold neither `@peculiar/x509` nor `reflect-metadata`: they serve `--self-test` only, which
 *   loads them with a dynamic `import()` in csi/self_check.ts (13 MB resident and 0.1 s of start-up
 *   otherwise paid by every node, see bench/driver_memory_bench.ts);
 * - name exactly the npm packages the driver needs, so a new heavy dependency (each one is
 *   measured in bench/driver_memory_bench.ts) is a decision, not an accident;
 * - never, not even behind a dynamic import, hold `@kubernetes/client-node` (~56 MB resident):
 *   the driver talks to the API server through kube/client.ts.
 *
 * Reads Deno's own graph rather than grepping sources, so re-exports through `mod.ts` faces
 * count.
 */

import assert from "node:assert/strict";
import { runCommand } from "./harness/mod.ts";

interface Dependency {
  code?: { specifier?: string };
  isDynamic?: boolean;
}

interface DenoInfo {
  roots: string[];
  modules: { specifier: string; dependencies?: Dependency[]; npmPackage?: string }[];
  redirects: Record<string, string>;
  npmPackages: Record<string, { name: string; dependencies: string[] }>;
}

/** What a root reaches: local and npm module specifiers, and npm package names (transitive). */
interface Reach {
  modules: Set<string>;
  npmImports: Set<string>;
  npmPackages: Set<string>;
}

function reach(info: DenoInfo, followDynamic: (from: string) => boolean): Reach {
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const modules = new Set<string>();
  const npmImports = new Set<string>();
  const stack = [...info.roots];
  while (stack.length) {
    const specifier = stack.pop()!;
    const target = info.redirects[specifier] ?? specifier;
    if (modules.has(target)) continue;
    modules.add(target);
    const module = bySpecifier.get(target);
    if (module?.npmPackage) npmImports.add(info.npmPackages[module.npmPackage].name);
    for (const dependency of module?.dependencies ?? []) {
      if (dependency.isDynamic && !followDynamic(target)) continue;
      if (dependency.code?.specifier) stack.push(dependency.code.specifier);
    }
  }
  const npmPackages = new Set<string>();
  const ids = [...modules].flatMap((s) => bySpecifier.get(s)?.npmPackage ?? []);
  while (ids.length) {
    const id = ids.pop()!;
    const pkg = info.npmPackages[id];
    if (!pkg || npmPackages.has(pkg.name)) continue;
    npmPackages.add(pkg.name);
    ids.push(...pkg.dependencies);
  }
  return { modules, npmImports, npmPackages };
}

const SELF_TEST_ONLY = ["@peculiar/x509", "reflect-metadata"];

Deno.test("csi/main.ts loads @peculiar/x509 and reflect-metadata only for --self-test", async () => {
  const out = await runCommand([Deno.execPath(), "info", "--json", "csi/main.ts"], {
    cwd: new URL("..", import.meta.url).pathname,
    check: true,
  });
  const info = JSON.parse(out.stdout) as DenoInfo;
  const loaded = reach(info, () => false);
  assert.ok(loaded.modules.size > 30, `static graph of ${loaded.modules.size} modules`);
  assert.deepEqual(
    [...loaded.npmPackages].filter((p) => SELF_TEST_ONLY.some((x) => p.startsWith(x))),
    [],
    "loaded at start-up",
  );
  assert.deepEqual([...loaded.npmImports].sort(), ["@grpc/grpc-js", "protobufjs"]);
  assert.ok(
    [...loaded.modules].some((s) => s.endsWith("/kube/client.ts")),
    "the driver's own Kubernetes client is loaded",
  );
  // They are in the graph, and only csi/self_check.ts's dynamic import leads there.
  const selfCheck = [...loaded.modules].find((s) => s.endsWith("/csi/self_check.ts"));
  assert.ok(selfCheck, "csi/self_check.ts is part of the program");
  const all = reach(info, () => true);
  for (const name of SELF_TEST_ONLY) assert.ok(all.npmPackages.has(name), `${name} in the graph`);
  assert.ok(!all.npmPackages.has("@kubernetes/client-node"), "client-node in the graph");
  const notSelfTest = reach(info, (from) => from !== selfCheck);
  assert.deepEqual(
    [...notSelfTest.npmPackages].filter((p) => SELF_TEST_ONLY.some((x) => p.startsWith(x))),
    [],
    "reached by a dynamic import other than csi/self_check.ts's",
  );
});
