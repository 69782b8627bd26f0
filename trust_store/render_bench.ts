/**
 * Render benchmark: the debian layout from the system bundle (~140 certificates) plus one custom
 * CA, against a baseline of simply reading the same input files; and certificate parsing with
 * `node:crypto` `X509Certificate` against `@peculiar/x509`. `deno bench` prints each group's
 * ratio to its baseline; a last, single-run entry prints medians and ranges (ms) of its own
 * samples.
 * Target: ≤ 25 ms per render.
 *
 *   ./scripts/deno bench -A trust_store/render_bench.ts
 *
 * Run as a program it renders every OS family's layout instead and prints `BENCH {json}` lines
 * (median of `--samples` renders each, against the median of reading the inputs):
 *
 *   ./scripts/deno run -A trust_store/render_bench.ts [--samples=40]
 *
 * @module
 */

import { X509Certificate as NodeX509 } from "node:crypto";
import { x509 } from "../x509/mod.ts";
import { parseArgs } from "node:util";
import {
  AtomicWriter,
  buildTrustSet,
  OS_FAMILIES,
  type OsFamily,
  parsePem,
  renderTrustStore,
} from "./mod.ts";
import { benchLine } from "../bench/report.ts";
import { makeCert } from "./testdata/pki.ts";

const SYSTEM = "/etc/ssl/certs/ca-certificates.crt";
const dir = await Deno.makeTempDir({ prefix: "render-bench-" });
const customPath = `${dir}/custom-ca.pem`;
await Deno.writeTextFile(customPath, (await makeCert({ subject: "CN=Bench Root" })).pem);
const ders = parsePem("system", Deno.readTextFileSync(SYSTEM)).map((b) => b.der);
const outDir = `${dir}/out`;
await Deno.mkdir(outDir);
const writer = new AtomicWriter(outDir, { fsync: false });

function readInputs(): number {
  return Deno.readTextFileSync(SYSTEM).length + Deno.readTextFileSync(customPath).length;
}

async function render(family: OsFamily = "debian"): Promise<number> {
  const set = await buildTrustSet(
    [{ name: customPath, text: Deno.readTextFileSync(customPath) }],
    { base: { kind: "file", path: SYSTEM } },
  );
  return renderTrustStore(family, set).size;
}

function parseNode(): number {
  let n = 0;
  for (const der of ders) {
    const c = new NodeX509(der);
    n += c.subject.length + c.validTo.length + (c.ca ? 1 : 0);
  }
  return n;
}

function parsePeculiar(): number {
  let n = 0;
  for (const der of ders) {
    const c = new x509.X509Certificate(der as Uint8Array<ArrayBuffer>);
    const bc = c.getExtension(x509.BasicConstraintsExtension);
    n += c.subject.length + c.notAfter.getTime() % 7 + (bc?.ca ? 1 : 0);
  }
  return n;
}

let alternate = 0;
const payloads = [
  renderTrustStore("debian", await buildTrustSet([], { base: { kind: "file", path: SYSTEM } })),
];
payloads.push(
  renderTrustStore(
    "debian",
    await buildTrustSet([{ name: "c", text: Deno.readTextFileSync(customPath) }], {
      base: { kind: "file", path: SYSTEM },
    }),
  ),
);

Deno.bench("read input files", { group: "render", baseline: true }, () => {
  readInputs();
});
Deno.bench("render debian layout (parse, filter, hash, JKS)", { group: "render" }, async () => {
  await render("debian");
});
Deno.bench("render + AtomicWriter swap (tmp dir, no fsync)", { group: "render" }, async () => {
  await render("debian");
  await writer.write(payloads[alternate++ % 2]);
});
Deno.bench(
  "parse ~140 certs: node:crypto X509Certificate",
  { group: "parse", baseline: true },
  () => {
    parseNode();
  },
);
Deno.bench("parse ~140 certs: @peculiar/x509", { group: "parse" }, () => {
  parsePeculiar();
});

async function sample(fn: () => unknown, n: number): Promise<number[]> {
  for (let i = 0; i < 3; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

let summarized = false;
// Runs last (benches run in registration order): medians and ranges from its own samples.
Deno.bench(
  "summary: median and range (printed below)",
  { group: "summary", n: 1, warmup: 0 },
  async () => {
    if (summarized) return; // deno bench may call a single-run bench again; print once
    summarized = true;
    const n = 40;
    const base = await sample(readInputs, n);
    const rend = await sample(() => render("debian"), n);
    const node = await sample(parseNode, n);
    const pec = await sample(parsePeculiar, n);
    const med = (a: number[]) => a[Math.floor(a.length / 2)];
    const fmt = (name: string, a: number[], ref: number[]) =>
      `${name.padEnd(34)} median ${med(a).toFixed(2)} ms (range ${a[0].toFixed(2)}–${
        a[a.length - 1].toFixed(2)
      }), ${(med(a) / med(ref)).toFixed(1)}× baseline`;
    console.log(
      [
        `summary (${ders.length} system certificates + 1 custom CA, ${n} runs each):`,
        fmt("read input files (baseline)", base, base),
        fmt("render debian layout", rend, base),
        fmt("parse: node:crypto (baseline)", node, node),
        fmt("parse: @peculiar/x509", pec, node),
        `render target ≤ 25 ms: ${med(rend) <= 25 ? "met" : "NOT met"}`,
      ].join("\n"),
    );
    await Deno.remove(dir, { recursive: true });
  },
);

/** `deno run` mode: every family's layout, printed as BENCH lines. */
async function runMode(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { samples: { type: "string", default: "40" } },
  });
  const n = Number(values.samples);
  const med = (a: number[]) => a[Math.floor(a.length / 2)];
  const section = `render: system bundle (${ders.length} certificates) + 1 CA, per layout`;
  const base = med(await sample(readInputs, n));
  for (const family of OS_FAMILIES) {
    const files = await render(family);
    console.log(benchLine({
      id: `render.${family}`,
      section,
      label: `${family} (${files} files)`,
      unit: "ms",
      value: med(await sample(() => render(family), n)),
      baseline: base,
      baselineLabel: "read the input files",
      target: { max: 25, text: "render ≤ 25 ms (project)" },
    }));
  }
  const node = med(await sample(parseNode, n));
  console.log(benchLine({
    id: "render.parse",
    section,
    label: `parse ${ders.length} certificates with @peculiar/x509`,
    unit: "ms",
    value: med(await sample(parsePeculiar, Math.min(n, 10))),
    baseline: node,
    baselineLabel: "node:crypto X509Certificate (what the engine uses)",
  }));
  await Deno.remove(dir, { recursive: true });
}

if (import.meta.main) await runMode();
