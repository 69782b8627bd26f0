/**
 * `webhook/main.ts --controller=false` loads neither the Kubernetes client (kube/client.ts) nor
 * the controller modules: they sit behind one dynamic `import()` of `webhook/controllers.ts`. And
 * `@kubernetes/client-node` is loaded by neither half: only its types are named.
 *
 * Checked on the graph Deno itself builds (`deno info --json`): from `webhook/main.ts`, follow
 * only the dependencies a module loads when it is evaluated, i.e. `code` edges that are not
 * `isDynamic`. A type-only import appears in `deno info` as a `type` edge without `code` (app.ts
 * and mutate.ts name client-node types that way), so it is not followed; a dynamic `import()`
 * is marked `isDynamic` even when a `type` import of the same module sits beside it. The same walk
 * from `webhook/controllers.ts`, and from `main.ts` with dynamic edges followed, must reach the
 * client, so the check can tell the two apart and would fail on a static import.
 */

import assert from "node:assert/strict";
import { runCommand } from "./harness/mod.ts";

const ROOT = new URL("..", import.meta.url);
const CLIENT_NODE = "npm:@kubernetes/client-node@";
const CLIENT = "kube/client.ts";
const CONTROLLER_MODULES = [
  "webhook/controllers.ts",
  "webhook/controller.ts",
  "webhook/class_status.ts",
  "webhook/registrations.ts",
];

interface InfoDependency {
  code?: { specifier?: string };
  type?: { specifier?: string };
  isDynamic?: boolean;
}

interface Info {
  roots: string[];
  modules: { specifier: string; dependencies?: InfoDependency[] }[];
}

async function info(entry: string): Promise<Info> {
  const out = await runCommand([Deno.execPath(), "info", "--json", entry], {
    cwd: ROOT.pathname,
    check: true,
  });
  return JSON.parse(out.stdout) as Info;
}

/** Every specifier reached from the root through `code` edges (dynamic ones only if asked). */
function loaded(graph: Info, followDynamic: boolean): Set<string> {
  const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const queue = [...graph.roots];
  while (queue.length > 0) {
    const specifier = queue.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      const next = dependency.code?.specifier;
      if (next && (followDynamic || !dependency.isDynamic)) queue.push(next);
    }
  }
  return seen;
}

const local = (specifiers: Set<string>) =>
  [...specifiers].filter((s) => s.startsWith(ROOT.href)).map((s) => s.slice(ROOT.href.length));

Deno.test("webhook: main.ts loads no Kubernetes client and no controller module until the controller runs", async () => {
  const main = await info("webhook/main.ts");
  const atStart = loaded(main, false);
  assert.ok(local(atStart).includes("webhook/server.ts"), "the walk reaches the server");
  assert.deepEqual(local(atStart).filter((p) => p === CLIENT), [], "kube/client.ts at start");
  assert.deepEqual([...atStart].filter((s) => s.startsWith(CLIENT_NODE)), [], "client-node");
  assert.deepEqual(local(atStart).filter((p) => CONTROLLER_MODULES.includes(p)), []);
  // Something statically loaded does name client-node, but only as types.
  const typeOnly = main.modules.filter((m) =>
    atStart.has(m.specifier) &&
    m.dependencies?.some((d) => d.type?.specifier?.startsWith(CLIENT_NODE) && !d.code)
  );
  assert.ok(typeOnly.length > 0, "a type-only import of client-node is in the start-up graph");

  // With the controller: every controller module and the client are one dynamic import away,
  // and client-node is still not loaded.
  const withController = loaded(main, true);
  assert.ok(local(withController).includes(CLIENT));
  assert.deepEqual([...withController].filter((s) => s.startsWith(CLIENT_NODE)), []);
  assert.deepEqual(
    local(withController).filter((p) => CONTROLLER_MODULES.includes(p)).sort(),
    [...CONTROLLER_MODULES].sort(),
  );
  const controllers = loaded(await info("webhook/controllers.ts"), false);
  assert.ok(local(controllers).includes(CLIENT), "controllers.ts loads kube/client.ts");
  assert.deepEqual([...controllers].filter((s) => s.startsWith(CLIENT_NODE)), []);
});
