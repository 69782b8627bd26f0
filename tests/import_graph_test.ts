/**
 * Imports run one way. The module graph of every entry point (the programs, the examples, the
 * build script and every folder's `mod.ts`) is read with `deno info --json` and checked against
 * the layers below; any import cycle fails too, dynamic `import()`s included.
 *
 * | layer | folders | may import |
 * | --- | --- | --- |
 * | shared libraries | `api/`, `cli/`, `kube/`, `prometheus/`, `trust_store/`, `x509/` | each other |
 * | SPIFFE side | `spire/` | shared libraries |
 * | programs | `csi/`, `webhook/` | shared libraries, `spire/`; never each other |
 * | examples and tools | `workloads/`, `scripts/` | anything above |
 *
 * Nothing a program loads comes from `workloads/` (examples a user copies), `tests/` or `bench/`.
 */

import assert from "node:assert/strict";
import { findCycles, moduleGraph } from "./harness/module_graph.ts";

const SHARED = ["api", "cli", "kube", "prometheus", "trust_store", "x509"];
const PRODUCT = [...SHARED, "spire", "csi", "webhook"];

/** Folder (first path segment) to the folders it must not import. */
const FORBIDDEN: Record<string, string[]> = {
  ...Object.fromEntries(SHARED.map((f) => [f, ["spire", "csi", "webhook"]])),
  spire: ["csi", "webhook"],
  csi: ["webhook"],
  webhook: ["csi"],
};
const NEVER_FROM_PRODUCT = ["workloads", "tests", "bench", "scripts"];

const ENTRY_POINTS = [
  "mod.ts",
  "csi/main.ts",
  "webhook/main.ts",
  "workloads/server.ts",
  "workloads/client.ts",
  "workloads/demo.ts",
  "scripts/build.ts",
  "scripts/manifest_rules.ts",
  // The test harness: not layered, but part of the cycle check (it drives the programs).
  "tests/harness/mod.ts",
];

async function faces(): Promise<string[]> {
  const found: string[] = [];
  for (const folder of PRODUCT) {
    const path = `${folder}/mod.ts`;
    if (await Deno.stat(new URL(`../${path}`, import.meta.url)).then(() => true, () => false)) {
      found.push(path);
    }
  }
  return found;
}

const folder = (path: string) => path.includes("/") ? path.split("/")[0] : ".";

Deno.test("every shared folder, spire/, csi/ and webhook/ has a mod.ts face", async () => {
  assert.deepEqual((await faces()).map(folder), PRODUCT);
});

Deno.test("imports run one way and the module graph has no cycle", async () => {
  const graph = await moduleGraph([...ENTRY_POINTS, ...await faces()]);
  assert.ok(graph.size > 50, `graph of ${graph.size} modules`);
  const wrong: string[] = [];
  for (const [from, edges] of graph) {
    const source = folder(from);
    for (const to of edges) {
      const target = folder(to);
      if (target === source) continue;
      if (FORBIDDEN[source]?.includes(target)) wrong.push(`${from} -> ${to}`);
      if (PRODUCT.includes(source) && NEVER_FROM_PRODUCT.includes(target)) {
        wrong.push(`${from} -> ${to}`);
      }
    }
  }
  assert.deepEqual(wrong, [], "imports against the layers (see this file's doc)");
  assert.deepEqual(findCycles(graph).map((c) => c.join(" -> ")), [], "import cycles");
});

Deno.test("the cycle finder reports a cycle and nothing for a tree", () => {
  const tree = new Map([["a", new Set(["b", "c"])], ["b", new Set(["c"])], [
    "c",
    new Set<string>(),
  ]]);
  assert.deepEqual(findCycles(tree), []);
  const loop = new Map([
    ["a", new Set(["b"])],
    ["b", new Set(["c"])],
    ["c", new Set(["a"])],
    ["d", new Set(["a"])],
  ]);
  assert.deepEqual(findCycles(loop), [["a", "b", "c"]]);
});
