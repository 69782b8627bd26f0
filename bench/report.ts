/**
 * Pure part of `deno task bench`: parsing the `BENCH {json}` lines every benchmark prints,
 * aggregating figures over repeated runs (median, min–max, ratio to the same-run baseline,
 * target verdict) and rendering `docs/benchmarks.md`.
 *
 * @module
 */

/** Prefix of a machine-readable benchmark line on stdout. */
export const BENCH_PREFIX = "BENCH ";

/** A target a figure is compared with (printed PASS/MISS, never asserted). */
export interface Target {
  /** The figure passes when it is at most this. */
  max?: number;
  /** The figure passes when it is at least this. */
  min?: number;
  /** How the target reads, e.g. "p99 ≤ 5 ms at 200 req/s". */
  text: string;
}

/** One figure from one run of one benchmark, as printed after {@link BENCH_PREFIX}. */
export interface BenchRecord {
  /** Stable id, the same in every run, e.g. `webhook.mutate.p99@200`. */
  id: string;
  /** Section of the report, e.g. `webhook /mutate over TLS`. */
  section: string;
  /** What was measured, e.g. `/mutate p99 at 200 req/s`. */
  label: string;
  /** Unit of `value` and `baseline`, e.g. `ms`, `req/s`, `MB`, `requests`. */
  unit: string;
  /** The measurement. */
  value: number;
  /** The same quantity for the baseline, measured in the same run. */
  baseline?: number;
  /** What the baseline is. */
  baselineLabel?: string;
  /** Target, if the issue sets one. */
  target?: Target;
  /** Command that reproduces this figure on its own (filled in by the runner when absent). */
  command?: string;
}

/** A malformed `BENCH` line. */
export class BenchLineError extends Error {
  /** @param line the offending line; @param reason what is wrong with it */
  constructor(readonly line: string, reason: string) {
    super(`bad BENCH line (${reason}): ${line.slice(0, 200)}`);
    this.name = "BenchLineError";
  }
}

/** Formats a record as the line a benchmark prints. */
export function benchLine(record: BenchRecord): string {
  return BENCH_PREFIX + JSON.stringify(record);
}

/**
 * Extracts the records from a benchmark's output; lines without the prefix are ignored.
 *
 * @throws {BenchLineError} for a prefixed line that is not a valid record
 */
export function parseBenchLines(text: string): BenchRecord[] {
  const out: BenchRecord[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (!line.startsWith(BENCH_PREFIX)) continue;
    let value: unknown;
    try {
      value = JSON.parse(line.slice(BENCH_PREFIX.length));
    } catch {
      throw new BenchLineError(line, "not JSON");
    }
    const r = value as Partial<BenchRecord>;
    for (const key of ["id", "section", "label", "unit"] as const) {
      if (typeof r[key] !== "string" || r[key] === "") {
        throw new BenchLineError(line, `missing ${key}`);
      }
    }
    if (typeof r.value !== "number" || !Number.isFinite(r.value)) {
      throw new BenchLineError(line, "value is not a finite number");
    }
    if (r.baseline !== undefined && (typeof r.baseline !== "number" || !isFinite(r.baseline))) {
      throw new BenchLineError(line, "baseline is not a finite number");
    }
    out.push(r as BenchRecord);
  }
  return out;
}

/** Median, min and max of a sample. */
export interface Spread {
  /** Median (mean of the two middle values for an even count). */
  median: number;
  /** Smallest value. */
  min: number;
  /** Largest value. */
  max: number;
  /** Number of values. */
  n: number;
}

/** Median with min–max. @throws {RangeError} for an empty sample */
export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError("spread of an empty sample");
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], n: s.length };
}

/**
 * Nearest-rank percentile (`p` in 0..1) of an unsorted sample.
 *
 * @throws {RangeError} for an empty sample
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError("percentile of an empty sample");
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.ceil(p * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

/** Verdict of a figure against its target. */
export type Verdict = "PASS" | "MISS";

/** Whether `value` meets `target`. */
export function verdict(value: number, target: Target): Verdict {
  if (target.max !== undefined && value > target.max) return "MISS";
  if (target.min !== undefined && value < target.min) return "MISS";
  return "PASS";
}

/** One figure aggregated over every run it appeared in. */
export interface Figure {
  /** Record id. */
  id: string;
  /** Report section. */
  section: string;
  /** What was measured. */
  label: string;
  /** Unit. */
  unit: string;
  /** The value over runs. */
  value: Spread;
  /** The baseline over runs, if any. */
  baseline?: Spread;
  /** Baseline description. */
  baselineLabel?: string;
  /** value / baseline per run, over runs (when every run had a non-zero baseline). */
  ratio?: Spread;
  /** Target, if any. */
  target?: Target;
  /** Verdict of the median against the target. */
  verdict?: Verdict;
  /** Reproducing command. */
  command: string;
}

/**
 * Aggregates the records of several runs by id, keeping the order ids first appeared in.
 * The verdict is taken on the median over runs.
 */
export function aggregate(runs: readonly (readonly BenchRecord[])[]): Figure[] {
  const byId = new Map<string, BenchRecord[]>();
  for (const run of runs) {
    for (const r of run) {
      const list = byId.get(r.id) ?? [];
      list.push(r);
      byId.set(r.id, list);
    }
  }
  const figures: Figure[] = [];
  for (const [id, list] of byId) {
    const first = list[0];
    const last = list[list.length - 1];
    const value = spread(list.map((r) => r.value));
    const baselines = list.filter((r) => r.baseline !== undefined).map((r) => r.baseline!);
    const ratios = list.every((r) => r.baseline !== undefined && r.baseline !== 0)
      ? list.map((r) => r.value / r.baseline!)
      : [];
    const target = last.target;
    figures.push({
      id,
      section: first.section,
      label: first.label,
      unit: first.unit,
      value,
      baseline: baselines.length ? spread(baselines) : undefined,
      baselineLabel: list.find((r) => r.baselineLabel)?.baselineLabel,
      ratio: ratios.length ? spread(ratios) : undefined,
      target,
      verdict: target ? verdict(value.median, target) : undefined,
      command: last.command ?? "",
    });
  }
  return figures;
}

/**
 * Formats a number for a table: integers as they are (unless `decimals`), otherwise more
 * decimals for small magnitudes; thousands separators.
 */
export function formatNumber(v: number, decimals = false): string {
  const abs = Math.abs(v);
  const digits = Number.isInteger(v) && !decimals
    ? 0
    : abs < 1
    ? 3
    : abs < 10
    ? 2
    : abs < 100
    ? 1
    : 0;
  return v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** `median (min–max) unit`, or just the value for a single run or an exact spread. */
export function formatSpread(s: Spread, unit: string): string {
  const u = unit === "×" ? "×" : unit ? ` ${unit}` : "";
  // Counts stay integers; measurements get decimals throughout, even where one is whole.
  const d = ![s.median, s.min, s.max].every(Number.isInteger);
  if (s.n === 1 || s.min === s.max) return `${formatNumber(s.median, d)}${u}`;
  return `${formatNumber(s.median, d)}${u} (${formatNumber(s.min, d)}–${formatNumber(s.max, d)})`;
}

/** The machine a report was measured on. */
export interface MachineInfo {
  /** CPU model name. */
  cpu: string;
  /** Logical CPUs. */
  cores: number;
  /** Total memory in MiB. */
  memoryMiB: number;
  /** Distribution name. */
  os: string;
  /** Kernel release. */
  kernel: string;
  /** Deno, V8 and TypeScript versions. */
  deno: string;
  /** 1/5/15-minute load averages before the first benchmark. */
  loadBefore: number[];
  /** 1/5/15-minute load averages after the last benchmark. */
  loadAfter: number[];
}

/** Everything {@link renderMarkdown} needs. */
export interface ReportInput {
  /** Aggregated figures. */
  figures: Figure[];
  /** Machine description. */
  machine: MachineInfo;
  /** When the runs started (ISO 8601). */
  started: string;
  /** Total wall time in seconds. */
  durationS: number;
  /** Number of runs. */
  runs: number;
  /** The command that produced the whole report. */
  command: string;
  /** Steps that failed (name and exit code), reported rather than hidden. */
  failures: { step: string; detail: string }[];
  /** Markdown paragraphs on method and reading the figures, placed before the figures. */
  notes?: string;
}

function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** Renders `docs/benchmarks.md`. */
export function renderMarkdown(input: ReportInput): string {
  const { figures, machine } = input;
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" / ");
  const lines: string[] = [
    "# Benchmarks",
    "",
    `Generated by \`${input.command}\` (bench/run.ts) on ${input.started.slice(0, 10)}, ` +
    `started ${input.started.slice(11, 16)} UTC, ${input.runs} run(s), ` +
    `${Math.round(input.durationS / 60)} min in total. Each figure is the **median over the ` +
    "runs with min–max in brackets**; a baseline is measured in the same run as its figure, " +
    "and the ratio is taken per run, then summarised the same way. Targets are judged on the " +
    "median and printed, never asserted. Latency percentiles inside one run are nearest-rank.",
    "",
    "## Machine",
    "",
    "| | |",
    "| --- | --- |",
    `| CPU | ${cell(machine.cpu)} |`,
    `| logical cores | ${machine.cores} |`,
    `| memory | ${formatNumber(machine.memoryMiB)} MiB |`,
    `| OS / kernel | ${cell(machine.os)} / ${cell(machine.kernel)} |`,
    `| Deno | ${cell(machine.deno)} |`,
    `| load average (1/5/15 min) before | ${load(machine.loadBefore)} |`,
    `| load average (1/5/15 min) after | ${load(machine.loadAfter)} |`,
    "",
    "The machine is shared (other builds and tests may run at the same time); the load averages " +
    "show how busy it was. Tail latencies are the figures most affected.",
    "",
  ];
  if (input.notes) lines.push(input.notes.trim(), "");
  const targeted = figures.filter((f) => f.target);
  if (targeted.length) {
    lines.push(
      "## Targets",
      "",
      "| target | figure | median (min–max) | verdict |",
      "| --- | --- | --- | --- |",
    );
    for (const f of targeted) {
      lines.push(
        `| ${cell(f.target!.text)} | ${cell(f.label)} | ${
          cell(formatSpread(f.value, f.unit))
        } | **${f.verdict}** |`,
      );
    }
    lines.push("");
  }
  if (input.failures.length) {
    lines.push("## Steps that failed", "");
    for (const f of input.failures) lines.push(`- ${cell(f.step)}: ${cell(f.detail)}`);
    lines.push("");
  }
  const sections = [...new Set(figures.map((f) => f.section))];
  for (const section of sections) {
    const fs = figures.filter((f) => f.section === section);
    lines.push(`## ${section}`, "");
    const commands = [...new Set(fs.map((f) => f.command).filter((c) => c))];
    // One command: shown once. Several: numbered, and each figure names its command.
    const mark = (f: Figure) =>
      commands.length > 1 && f.command ? ` [${commands.indexOf(f.command) + 1}]` : "";
    if (commands.length === 1) lines.push("```sh", commands[0], "```", "");
    else {
      for (const [i, c] of commands.entries()) lines.push(`[${i + 1}] \`${c}\``, "");
    }
    lines.push(
      "| figure | median (min–max) | baseline (same run) | ratio to baseline | target |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const f of fs) {
      const base = f.baseline
        ? `${cell(f.baselineLabel ?? "baseline")}: ${cell(formatSpread(f.baseline, f.unit))}`
        : "";
      const ratio = f.ratio ? `${cell(formatSpread(f.ratio, "×"))}` : "";
      const target = f.target ? `${cell(f.target.text)}: **${f.verdict}**` : "";
      lines.push(
        `| ${cell(f.label + mark(f))} | ${
          cell(formatSpread(f.value, f.unit))
        } | ${base} | ${ratio} | ${target} |`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}
