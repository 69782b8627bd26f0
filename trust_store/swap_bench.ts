/**
 * AtomicWriter cost at scale, without the driver around it: one rendered store swapped into N
 * volume directories on one tmpfs, one after another, as the driver does after a Secret change.
 * Baseline: overwriting the same files in place (what a writer without atomicity would do).
 * Two stores: the debian layout of one CA (4 files), and of the system bundle plus one CA
 * (~280 files, with `--bundle-volumes`).
 *
 *   ./scripts/deno run -A trust_store/swap_bench.ts [--volumes=1000] [--bundle-volumes=100]
 *
 * Prints one `BENCH {json}` line per figure (see bench/report.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  AtomicWriter,
  type BaseRoots,
  buildTrustSet,
  type Payload,
  renderTrustStore,
} from "./mod.ts";
import { makeCert } from "./testdata/pki.ts";
import { scratchDir } from "./testdata/tmpfs.ts";
import { benchLine } from "../bench/report.ts";

const SECTION = "AtomicWriter swap alone (sequential, one tmpfs, no fsync)";

async function stores(base: BaseRoots): Promise<Payload[]> {
  const out: Payload[] = [];
  for (const cn of ["Swap A", "Swap B"]) {
    const pem = (await makeCert({ subject: `CN=${cn}` })).pem;
    out.push(renderTrustStore("debian", await buildTrustSet([{ name: cn, text: pem }], { base })));
  }
  return out;
}

async function measure(name: string, n: number, payloads: Payload[]): Promise<void> {
  const scratch = await scratchDir("swap-bench-", "2g");
  try {
    const writers: AtomicWriter[] = [];
    for (let i = 0; i < n; i++) {
      const d = join(scratch.dir, `v${i}`);
      Deno.mkdirSync(d);
      writers.push(new AtomicWriter(d, { fsync: false }));
    }
    const all = async (fn: (w: AtomicWriter) => unknown) => {
      const t = performance.now();
      for (const w of writers) await fn(w);
      return performance.now() - t;
    };
    const inPlace = (w: AtomicWriter, p: Payload) => {
      for (const [rel, bytes] of p) Deno.writeFileSync(join(w.dir, "..data", rel), bytes);
    };
    await all((w) => w.write(payloads[0]));
    const swaps: number[] = [];
    const bases: number[] = [];
    for (let r = 0; r < 2; r++) {
      swaps.push(await all((w) => w.write(payloads[(r + 1) % 2])));
      // Same bytes back in place: the cost of writing the files, nothing else.
      bases.push(await all((w) => inPlace(w, payloads[(r + 1) % 2])));
    }
    const noop = await all((w) => w.write(payloads[0]));
    const files = payloads[0].size;
    const common = { section: SECTION, unit: "ms" };
    const swap = Math.min(...swaps);
    const base = Math.min(...bases);
    console.log(benchLine({
      ...common,
      id: `swap.${name}.change`,
      label: `swap ${n} volumes, ${name} (${files} files), best of 2`,
      value: swap,
      baseline: base,
      baselineLabel: "overwrite the same files in place",
    }));
    console.log(benchLine({
      ...common,
      id: `swap.${name}.noop`,
      label: `unchanged store written to ${n} volumes, ${name}`,
      value: noop,
    }));
    const fresh = writers.map((w) => new AtomicWriter(w.dir, { fsync: false }));
    const t = performance.now();
    for (const w of fresh) await w.write(payloads[0]);
    console.log(benchLine({
      ...common,
      id: `swap.${name}.restart`,
      label:
        `unchanged store, ${n} fresh writers (driver restart: files compared on disk), ${name}`,
      value: performance.now() - t,
    }));
  } finally {
    await scratch.cleanup();
  }
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    volumes: { type: "string", default: "1000" },
    "bundle-volumes": { type: "string", default: "100" },
  },
});
await measure("one CA", Number(values.volumes), await stores({ kind: "none" }));
await measure(
  "system bundle + one CA",
  Number(values["bundle-volumes"]),
  await stores({ kind: "file", path: "/etc/ssl/certs/ca-certificates.crt" }),
);
