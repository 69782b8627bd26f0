/**
 * What each import of the CSI driver costs: for every library and project module csi/main.ts
 * loads (and `@peculiar/x509`, which only `--self-test` loads), a fresh idle Deno process imports
 * just that, and its VmRSS after a settle and the import's wall time are compared with a bare idle
 * Deno process measured in the same run. The last rows import the whole driver (csi/main.ts,
 * whose `main` does not run when imported) and the driver plus x509, which is what a static
 * import of `@peculiar/x509` would cost every node.
 *
 * ```sh
 * ./scripts/deno run -A bench/driver_memory_bench.ts [--settle-ms=2000]
 * ```
 *
 * Prints `BENCH {json}` lines (bench/report.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { setTimeout as delay } from "node:timers/promises";
import { benchLine } from "./report.ts";
import { readRss } from "./proc.ts";

/** One import measured on its own. */
interface Import {
  /** Specifiers imported, in order (import map names or paths from the repository root). */
  specifiers: string[];
  /** Why the driver has it. */
  role: string;
}

const IMPORTS: Import[] = [
  { specifiers: ["@grpc/grpc-js"], role: "the CSI gRPC server" },
  { specifiers: ["protobufjs"], role: "the CSI proto definitions" },
  { specifiers: ["@kubernetes/client-node"], role: "what kube/ replaced (not loaded)" },
  { specifiers: ["./csi/proto.ts"], role: "CSI services (grpc-js + protobufjs)" },
  { specifiers: ["./trust_store/mod.ts"], role: "trust store engine" },
  { specifiers: ["./kube/mod.ts"], role: "own Kubernetes client + object watcher" },
  { specifiers: ["./csi/main.ts"], role: "the whole driver" },
  { specifiers: ["./x509/mod.ts"], role: "only --self-test: @peculiar/x509 + reflect-metadata" },
  { specifiers: ["./csi/main.ts", "./x509/mod.ts"], role: "the driver if x509 were static" },
];

const ROOT = new URL("..", import.meta.url).pathname;

/** Imports `specifiers` in a fresh idle process; its import time (ms) and VmRSS (MB). */
async function measure(
  specifiers: string[],
  settleMs: number,
): Promise<{ ms: number; mb: number }> {
  const imports = specifiers.map((s) => `await import(${JSON.stringify(s)});`).join(" ");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const t = performance.now(); ${imports} console.log(performance.now() - t); ` +
      "setInterval(() => {}, 1e9)",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`import of ${specifiers} exited before reporting`);
      text += value;
    }
    reader.releaseLock();
    await delay(settleMs);
    return { ms: Number(text.trim()), mb: readRss(child.pid).rssMB };
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "settle-ms": { type: "string", default: "2000" } },
  });
  const settleMs = Number(values["settle-ms"]);
  // Warm Deno's caches (transpiled TS, npm resolution) so no row pays a first compile.
  for (const i of IMPORTS) await measure(i.specifiers, 0);
  const bare = await measure([], settleMs);
  const section = "CSI driver: cost of each import (fresh idle Deno process importing only that)";
  for (const i of IMPORTS) {
    const { ms, mb } = await measure(i.specifiers, settleMs);
    const name = i.specifiers.join(" + ");
    console.log(benchLine({
      id: `mem.driver.import.${name}`,
      section,
      label: `import ${name} (${i.role}): VmRSS`,
      unit: "MB",
      value: mb,
      baseline: bare.mb,
      baselineLabel: "bare Deno process, idle",
    }));
    console.log(benchLine({
      id: `time.driver.import.${name}`,
      section,
      label: `import ${name}: wall time of the import`,
      unit: "ms",
      value: ms,
    }));
  }
}
