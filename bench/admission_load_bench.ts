/**
 * Pod creates through a real kube-apiserver with the shipped webhook in the admission path, at
 * production rates: the setup of tests/webhook_load_test.ts (tests/harness/admission_load.ts:
 * `webhook/main.ts` with the Deployment's args and env inside a memory cgroup capped at its
 * `limits.memory`, registered with the shipped MutatingWebhookConfiguration, SVID rotating every
 * `--rotate-ms`) with labelled pods created open-loop at each of `--rates` per second for
 * `--seconds`, one rate after the other on the same setup. Unlabelled pods, which the
 * objectSelector keeps away from the webhook, are created interleaved at `--baseline-rate` in
 * the same window: their latency is the same API server and etcd under the same load without the
 * webhook call, the same-run baseline. A rate the API server itself cannot sustain shows as a
 * baseline as slow as the labelled pods.
 *
 * Before the rates, the capacity: `--in-flight` creates at a time (closed loop) for
 * `--closed-seconds`, labelled, then unlabelled as the baseline.
 *
 * ```sh
 * ./scripts/deno run -A bench/admission_load_bench.ts [--rates=50,200] [--seconds=60] \
 *   [--baseline-rate=20] [--rotate-ms=2000] [--in-flight=32] [--closed-seconds=20]
 * ```
 *
 * Targets: 0 failed admissions; the webhook's peak memory below its limit. Prints
 * `BENCH {json}` lines (bench/report.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { MemoryStats } from "../tests/harness/cgroup.ts";
import {
  type AdmissionLoad,
  createPodsAtRates,
  type PodCreateResult,
  startAdmissionLoad,
} from "../tests/harness/admission_load.ts";
import { benchLine, percentile } from "./report.ts";

const SECTION = "pod creates through kube-apiserver with the webhook in the admission path";

/** The figures of one load run. */
interface LoadFigures {
  labelled: PodCreateResult[];
  unlabelled: PodCreateResult[];
  elapsedS: number;
}

/** CPU seconds (user + system) `pid` has used, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`--${name}: a positive number, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** One rate on the running setup; prints its BENCH lines and says whether the webhook held. */
async function measure(
  load: AdmissionLoad,
  rate: number,
  baselineRate: number,
  seconds: number,
  rotateMs: number,
  idle: MemoryStats,
): Promise<boolean> {
  load.cgroup.resetPeak();
  const rotationsBefore = load.rotations;
  const cpuBefore = cpuSeconds(load.webhook.pid);
  const started = performance.now();
  const results = await createPodsAtRates(load, {
    labelledPerSecond: rate,
    unlabelledPerSecond: baselineRate,
    durationMs: seconds * 1000,
  });
  const figures: LoadFigures = {
    labelled: results.filter((r) => r.labelled),
    unlabelled: results.filter((r) => !r.labelled),
    elapsedS: (performance.now() - started) / 1000,
  };
  const alive = load.webhook.exitCode === null;
  const cpu = alive ? cpuSeconds(load.webhook.pid) - cpuBefore : NaN;
  const memory = load.cgroup.stats();
  const rotations = load.rotations - rotationsBefore;

  const failed = (list: PodCreateResult[]) => list.filter((r) => r.problem !== undefined);
  const reasons = new Map<string, number>();
  for (const r of failed(results)) {
    const key = `HTTP ${r.status}: ${r.problem!.slice(0, 120)}`;
    reasons.set(key, (reasons.get(key) ?? 0) + 1);
  }
  for (const [reason, count] of reasons) console.error(`[admission-load] ${count} × ${reason}`);
  console.error(
    `[admission-load] ${figures.labelled.length} labelled + ${figures.unlabelled.length} ` +
      `unlabelled creates in ${figures.elapsedS.toFixed(1)} s, ${rotations} SVID rotations, ` +
      `webhook ${alive ? "alive" : `exited ${load.webhook.exitCode}`}, cgroup peak ` +
      `${(memory.peakBytes / 2 ** 20).toFixed(1)} MiB, failcnt ${memory.failcnt}, ` +
      `OOM kills ${memory.oomKills}`,
  );

  const ms = (list: PodCreateResult[], p: number) =>
    Math.round(percentile(list.map((r) => r.latencyMs), p) * 10) / 10;
  const where = `${rate}/s labelled for ${seconds} s, SVID rotating every ${rotateMs} ms`;
  const baselineLabel = `unlabelled pods (not sent to the webhook), ${baselineRate}/s, same run`;
  console.log(benchLine({
    id: `admission.load.failed@${rate}`,
    section: SECTION,
    label: `failed admissions (${where}; rejected, errored or stored unmutated)`,
    unit: "pods",
    value: failed(figures.labelled).length + (alive ? 0 : 1),
    baseline: failed(figures.unlabelled).length,
    baselineLabel,
    target: { max: 0, text: "0 failed admissions" },
  }));
  // Sent on schedule; answered by the end of elapsedS (the last answer may come late).
  console.log(benchLine({
    id: `admission.load.answered@${rate}`,
    section: SECTION,
    label: `labelled creates answered per second, first send to last answer (${where})`,
    unit: "pods/s",
    value: Math.round(figures.labelled.length / figures.elapsedS),
    baseline: Math.round(figures.unlabelled.length / figures.elapsedS),
    baselineLabel,
  }));
  for (const [name, p] of [["p50", 0.5], ["p99", 0.99]] as const) {
    console.log(benchLine({
      id: `admission.load.${name}@${rate}`,
      section: SECTION,
      label: `create latency ${name} through the apiserver, labelled pods (${where})`,
      unit: "ms",
      value: ms(figures.labelled, p),
      baseline: ms(figures.unlabelled, p),
      baselineLabel,
    }));
  }
  if (alive) {
    // Includes the controller, the SVID reloads and the rotation's handshakes: everything the
    // process did in the window, divided by the admissions it served.
    console.log(benchLine({
      id: `admission.load.cpu@${rate}`,
      section: SECTION,
      label: `webhook CPU time (user + system) per labelled create (${where})`,
      unit: "ms",
      value: Math.round((cpu * 1000 / figures.labelled.length) * 100) / 100,
    }));
  }
  console.log(benchLine({
    id: `admission.load.memory@${rate}`,
    section: SECTION,
    label:
      `webhook peak memory during the load (cgroup max_usage_in_bytes) as % of limits.memory ` +
      `${load.container.memoryLimit} (${where})`,
    unit: "%",
    value: Math.round((memory.peakBytes / memory.limitBytes) * 1000) / 10,
    baseline: Math.round((idle.peakBytes / idle.limitBytes) * 1000) / 10,
    baselineLabel: "peak from start until ready, before the load",
    target: { max: 100, text: "peak below limits.memory, no OOM kill" },
  }));
  return memory.oomKills === 0 && alive;
}

/** Closed loop: `inFlight` creates at a time for `seconds`; returns creates/s and failures. */
async function closedLoop(
  load: AdmissionLoad,
  labelled: boolean,
  inFlight: number,
  seconds: number,
): Promise<{ perSecond: number; failed: number }> {
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (performance.now() < deadline) {
      const result = await load.createPod(labelled);
      if (result.problem === undefined) done++;
      else failed++;
    }
  }));
  return { perSecond: Math.round(done / ((performance.now() - started) / 1000)), failed };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rates: { type: "string", default: "200" },
      seconds: { type: "string", default: "60" },
      "baseline-rate": { type: "string", default: "20" },
      "rotate-ms": { type: "string", default: "2000" },
      "in-flight": { type: "string", default: "32" },
      "closed-seconds": { type: "string", default: "20" },
    },
  });
  const rates = values.rates.split(",").map((r) => positive("rates", r.trim()));
  const seconds = positive("seconds", values.seconds);
  const baselineRate = positive("baseline-rate", values["baseline-rate"]);
  const rotateMs = positive("rotate-ms", values["rotate-ms"]);
  const inFlight = positive("in-flight", values["in-flight"]);
  const closedSeconds = positive("closed-seconds", values["closed-seconds"]);

  const load = await startAdmissionLoad({
    rotateEveryMs: rotateMs,
    log: (m) => console.error(`[admission-load] ${m}`),
  });
  try {
    const idle = load.cgroup.stats();
    let healthy = true;
    // Capacity first, on an empty namespace: closed loop, labelled then unlabelled.
    const labelled = await closedLoop(load, true, inFlight, closedSeconds);
    const unlabelled = await closedLoop(load, false, inFlight, closedSeconds);
    console.error(
      `[admission-load] closed loop (${inFlight} in flight): ${labelled.perSecond} labelled/s ` +
        `(${labelled.failed} failed), ${unlabelled.perSecond} unlabelled/s (${unlabelled.failed} failed)`,
    );
    console.log(benchLine({
      id: "admission.load.max_throughput",
      section: SECTION,
      label:
        `labelled pod creates/s, closed loop with ${inFlight} in flight for ${closedSeconds} s`,
      unit: "pods/s",
      value: labelled.perSecond,
      baseline: unlabelled.perSecond,
      baselineLabel: "unlabelled pods (not sent to the webhook), same loop, same run",
    }));
    for (const rate of rates) {
      healthy = (await measure(load, rate, baselineRate, seconds, rotateMs, idle)) && healthy;
    }
    return healthy ? 0 : 1;
  } finally {
    // No namespace cleanup: the API server and its etcd go away with the setup.
    await load.stop();
  }
}

if (import.meta.main) Deno.exit(await main());
