/**
 * Every folder's face (`mod.ts`) type-checks with its doc examples and passes `deno doc --lint`:
 * the checks `deno task check` runs (scripts/check_docs.ts), kept here so the test command
 * enforces them.
 */

import assert from "node:assert/strict";
import { checkFace, FACES } from "../scripts/check_docs.ts";

Deno.test("every folder with a mod.ts is checked", async () => {
  const found = ["mod.ts"];
  for await (const entry of Deno.readDir(new URL("..", import.meta.url))) {
    if (!entry.isDirectory || ["tests", "bench", "workloads", "scripts"].includes(entry.name)) {
      continue;
    }
    const face = `${entry.name}/mod.ts`;
    if (await Deno.stat(new URL(`../${face}`, import.meta.url)).then(() => true, () => false)) {
      found.push(face);
    }
  }
  assert.deepEqual([...found].sort(), [...FACES].sort());
});

for (const face of FACES) {
  Deno.test(`${face}: doc examples type-check and deno doc --lint is clean`, async () => {
    const report = await checkFace(face);
    assert.ok(report.ok, report.output);
  });
}
