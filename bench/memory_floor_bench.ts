/**
 * The memory floor under the programs' idle figures: VmRSS of an idle Deno process that only
 * imports one library the programs depend on, against a bare idle Deno process measured in the
 * same run. Shows how much of the ≤ 80 MB idle budget the runtime and each library take before
 * any project code runs.
 *
 * ```sh
 * ./scripts/deno run -A bench/memory_floor_bench.ts
 * ```
 *
 * Prints `BENCH {json}` lines (bench/report.ts).
 *
 * @module
 */

import { benchLine } from "./report.ts";
import { bareDenoRssMB, idleRssMB } from "./proc.ts";

const LIBRARIES: { specifier: string; usedBy: string }[] = [
  { specifier: "@kubernetes/client-node", usedBy: "CSI driver, webhook controller" },
  { specifier: "@grpc/grpc-js", usedBy: "CSI driver" },
  { specifier: "hono", usedBy: "webhook" },
  { specifier: "node:https", usedBy: "webhook, example server and client" },
];

if (import.meta.main) {
  const bare = await bareDenoRssMB();
  for (const lib of LIBRARIES) {
    console.log(benchLine({
      id: `mem.floor.${lib.specifier}`,
      section: "memory floor: idle Deno process importing one library",
      label: `import ${lib.specifier} (used by: ${lib.usedBy})`,
      unit: "MB",
      value: await idleRssMB([lib.specifier]),
      baseline: bare,
      baselineLabel: "bare Deno process, idle",
    }));
  }
}
