/**
 * Cost of accepting an SVID set: `loadSvidSet` (node:crypto parse, key match, chain check) against
 * just reading the three files, and against parsing the same certificates with `@peculiar/x509`.
 *
 * ./scripts/deno bench -A spire/svid_bench.ts
 *
 * Run as a program it prints `BENCH {json}` lines (medians of `--samples` loads):
 *
 * ./scripts/deno run -A spire/svid_bench.ts [--samples=200]
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { benchLine } from "../bench/report.ts";
import { x509 } from "../x509/mod.ts";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { loadSvidSet } from "./mod.ts";

const dir = await Deno.makeTempDir({ prefix: "spire-svid-bench-" });
const ca = await DevCa.create();
const svid = await ca.issue({
  spiffeId: "spiffe://example.org/workload/server",
  dnsNames: ["server-service"],
  ttlMs: 3_600_000,
});
await writeSvidFiles(dir, { ...svid, bundlePem: ca.certPem });
const names = ["svid.pem", "svid_key.pem", "svid_bundle.pem"].map((n) => join(dir, n));

function readFiles(): Promise<string[]> {
  return Promise.all(names.map((n) => Deno.readTextFile(n)));
}

async function parsePeculiar(): Promise<void> {
  const [cert, , bundle] = await readFiles();
  new x509.X509Certificate(cert);
  new x509.X509Certificate(bundle);
}

Deno.bench("read the three files (baseline)", { group: "svid", baseline: true }, async () => {
  await readFiles();
});

Deno.bench("loadSvidSet (node:crypto)", { group: "svid" }, async () => {
  await loadSvidSet(dir);
});

Deno.bench("read + parse both certificates with @peculiar/x509", { group: "svid" }, async () => {
  await parsePeculiar();
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

async function median(fn: () => Promise<unknown>, n: number): Promise<number> {
  for (let i = 0; i < 5; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b)[Math.floor(n / 2)];
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { samples: { type: "string", default: "200" } },
  });
  const n = Number(values.samples);
  const base = await median(readFiles, n);
  const common = {
    section: "SVID set loading (spiffe-helper files)",
    unit: "ms",
    baseline: base,
    baselineLabel: "read the three files",
  };
  console.log(benchLine({
    ...common,
    id: "svid.load",
    label: "loadSvidSet: read, parse, key match, chain check (node:crypto)",
    value: await median(() => loadSvidSet(dir), n),
  }));
  console.log(benchLine({
    ...common,
    id: "svid.peculiar",
    label: "read + parse both certificates with @peculiar/x509",
    value: await median(parsePeculiar, n),
  }));
}
