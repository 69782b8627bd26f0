import assert from "node:assert/strict";
import {
  aggregate,
  benchLine,
  BenchLineError,
  type BenchRecord,
  formatNumber,
  formatSpread,
  parseBenchLines,
  percentile,
  renderMarkdown,
  spread,
  verdict,
} from "./report.ts";

const rec = (value: number, extra: Partial<BenchRecord> = {}): BenchRecord => ({
  id: "webhook.p99@200",
  section: "webhook /mutate over TLS",
  label: "/mutate p99 at 200 req/s",
  unit: "ms",
  value,
  ...extra,
});

Deno.test("parseBenchLines keeps prefixed records, ignores other output, rejects bad lines", () => {
  const text = [
    "listening",
    benchLine(rec(2.5, { baseline: 1.25 })),
    "  BENCH not at line start is ignored",
    benchLine(rec(3)),
    "",
  ].join("\n");
  const records = parseBenchLines(text);
  assert.equal(records.length, 2);
  assert.equal(records[0].value, 2.5);
  assert.equal(records[0].baseline, 1.25);
  assert.throws(() => parseBenchLines("BENCH {oops"), BenchLineError);
  assert.throws(() => parseBenchLines('BENCH {"id":"x","section":"s","label":"l","unit":"ms"}'), {
    message: /value is not a finite number/,
  });
  assert.throws(
    () => parseBenchLines('BENCH {"section":"s","label":"l","unit":"ms","value":1}'),
    { message: /missing id/ },
  );
});

Deno.test("spread and percentile: odd and even counts, unsorted input, empty sample", () => {
  assert.deepEqual(spread([5, 1, 3]), { median: 3, min: 1, max: 5, n: 3 });
  assert.deepEqual(spread([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4, n: 4 });
  assert.throws(() => spread([]), RangeError);
  const hundred = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1
  assert.equal(percentile(hundred, 0.5), 50);
  assert.equal(percentile(hundred, 0.99), 99);
  assert.equal(percentile(hundred, 1), 100);
  assert.equal(percentile([7], 0.99), 7);
  assert.throws(() => percentile([], 0.5), RangeError);
});

Deno.test("verdict honours max and min bounds", () => {
  assert.equal(verdict(5, { max: 5, text: "" }), "PASS");
  assert.equal(verdict(5.01, { max: 5, text: "" }), "MISS");
  assert.equal(verdict(0, { max: 0, text: "" }), "PASS");
  assert.equal(verdict(1, { max: 0, text: "" }), "MISS");
  assert.equal(verdict(9, { min: 10, text: "" }), "MISS");
});

Deno.test("aggregate: median over runs, per-run ratio, verdict on the median, id order kept", () => {
  const target = { max: 5, text: "p99 ≤ 5 ms at 200 req/s" };
  const other = (v: number): BenchRecord => ({
    id: "mem.idle",
    section: "memory",
    label: "webhook idle RSS",
    unit: "MB",
    value: v,
  });
  const figures = aggregate([
    [rec(4, { baseline: 2, target }), other(50)],
    [rec(8, { baseline: 2, target }), other(52)],
    [rec(3, { baseline: 3, target, command: "deno run x" }), other(51)],
  ]);
  assert.deepEqual(figures.map((f) => f.id), ["webhook.p99@200", "mem.idle"]);
  const [p99, mem] = figures;
  assert.deepEqual(p99.value, { median: 4, min: 3, max: 8, n: 3 });
  assert.deepEqual(p99.baseline, { median: 2, min: 2, max: 3, n: 3 });
  // Ratios per run: 2, 4, 1 → median 2 (not median value / median baseline).
  assert.deepEqual(p99.ratio, { median: 2, min: 1, max: 4, n: 3 });
  assert.equal(p99.verdict, "PASS");
  assert.equal(p99.command, "deno run x");
  assert.equal(mem.ratio, undefined);
  assert.equal(mem.verdict, undefined);
  assert.equal(aggregate([[rec(6, { target })]])[0].verdict, "MISS");
  // A run without a baseline drops the ratio rather than mixing in a bogus one.
  assert.equal(aggregate([[rec(1, { baseline: 2 })], [rec(1)]])[0].ratio, undefined);
});

Deno.test("number formatting scales decimals with magnitude", () => {
  assert.equal(formatNumber(0.01234), "0.012");
  assert.equal(formatNumber(2.345), "2.35");
  assert.equal(formatNumber(23.44), "23.4");
  assert.equal(formatNumber(1234.5), "1,235");
  assert.equal(formatNumber(0), "0");
  assert.equal(formatNumber(2), "2", "counts have no decimals");
  assert.equal(formatSpread({ median: 2, min: 1, max: 3.5, n: 3 }, "ms"), "2.00 ms (1.00–3.50)");
  assert.equal(formatSpread({ median: 2, min: 2, max: 2, n: 3 }, "ms"), "2 ms");
  assert.equal(formatSpread({ median: 3, min: 0, max: 7, n: 3 }, "requests"), "3 requests (0–7)");
  assert.equal(
    formatSpread({ median: 0.5, min: 0.4, max: 0.6, n: 2 }, "×"),
    "0.500× (0.400–0.600)",
  );
});

Deno.test("renderMarkdown: machine, targets table, sections with commands and baselines", () => {
  const target = { max: 5, text: "p99 ≤ 5 ms at 200 req/s" };
  const figures = aggregate([
    [rec(4, { baseline: 2, baselineLabel: "TLS echo p99", target, command: "deno run -A a.ts" })],
    [rec(6, { baseline: 3, baselineLabel: "TLS echo p99", target, command: "deno run -A a.ts" })],
  ]);
  const md = renderMarkdown({
    figures,
    machine: {
      cpu: "Test CPU | 2 GHz",
      cores: 2,
      memoryMiB: 24105,
      os: "Debian 12",
      kernel: "6.1.0",
      deno: "deno 2.8.3",
      loadBefore: [1, 2, 3],
      loadAfter: [0.5, 0.25, 0.125],
    },
    started: "2026-11-29T07:05:00.000Z",
    durationS: 600,
    runs: 2,
    command: "deno task bench",
    failures: [{ step: "rotation", detail: "exit code 1" }],
  });
  assert.match(md, /^# Benchmarks\n/);
  assert.match(md, /2026-11-29, started 07:05 UTC, 2 run\(s\), 10 min/);
  assert.match(md, /\| CPU \| Test CPU \\\| 2 GHz \|/); // pipes escaped inside cells
  assert.match(md, /\| memory \| 24,105 MiB \|/);
  assert.match(md, /before \| 1\.00 \/ 2\.00 \/ 3\.00 \|/);
  assert.match(
    md,
    /\| p99 ≤ 5 ms at 200 req\/s \| \/mutate p99 at 200 req\/s \| 5 ms \(4–6\) \| \*\*PASS\*\* \|/,
  );
  assert.match(md, /## Steps that failed\n\n- rotation: exit code 1/);
  assert.match(md, /## webhook \/mutate over TLS\n\n```sh\ndeno run -A a\.ts\n```/);
  assert.match(md, /TLS echo p99: 2\.50 ms \(2\.00–3\.00\) \| 2× \|/);
});

Deno.test("renderMarkdown: notes come first; a section with several commands numbers them", () => {
  const mem = (id: string, command: string): BenchRecord => ({
    id,
    section: "memory",
    label: id,
    unit: "MB",
    value: 70,
    command,
  });
  const md = renderMarkdown({
    figures: aggregate([[mem("driver", "deno run a.ts"), mem("webhook", "deno run b.ts")]]),
    machine: {
      cpu: "c",
      cores: 1,
      memoryMiB: 1,
      os: "o",
      kernel: "k",
      deno: "d",
      loadBefore: [0, 0, 0],
      loadAfter: [0, 0, 0],
    },
    started: "2026-11-29T07:05:00.000Z",
    durationS: 60,
    runs: 1,
    command: "deno task bench",
    failures: [],
    notes: "Read me first.",
  });
  assert.ok(md.indexOf("Read me first.") < md.indexOf("## memory"));
  assert.doesNotMatch(md, /## Targets/, "no targets, no targets table");
  assert.match(md, /\[1\] `deno run a\.ts`\n\n\[2\] `deno run b\.ts`/);
  assert.match(md, /\| driver \[1\] \| 70 MB \|/);
  assert.match(md, /\| webhook \[2\] \| 70 MB \|/);
});
