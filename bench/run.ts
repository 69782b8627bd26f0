/**
 * `deno task bench`: runs every benchmark `--runs` times (steps interleaved, so each run sees
 * the machine in a similar state), collects the `BENCH {json}` lines they print and writes
 * `docs/benchmarks.md`: each figure as median with min–max over the runs, its same-run baseline
 * and ratio, the target verdict, the machine and the command reproducing it.
 *
 * ```sh
 * ./scripts/deno task bench                      # 5 runs, ~12 min on 2 cores
 * ./scripts/deno run -A bench/run.ts --runs=5
 * ./scripts/deno run -A bench/run.ts --quick     # smoke: 1 short run, report to a temp file
 * ./scripts/deno run -A bench/run.ts --only=webhook,render
 * ```
 *
 * Every benchmark also runs alone with the command shown in the report.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import {
  aggregate,
  type BenchRecord,
  formatSpread,
  parseBenchLines,
  renderMarkdown,
} from "./report.ts";
import { machineInfo } from "./proc.ts";

/** One benchmark program. */
interface Step {
  name: string;
  /** Arguments after `./scripts/deno run -A`. */
  args: string[];
  /** Arguments used instead in --quick mode. */
  quick: string[];
}

const STEPS: Step[] = [
  {
    name: "render",
    args: ["trust_store/render_bench.ts", "--samples=40"],
    quick: ["trust_store/render_bench.ts", "--samples=5"],
  },
  {
    name: "swap",
    args: ["trust_store/swap_bench.ts", "--volumes=1000"],
    quick: ["trust_store/swap_bench.ts", "--volumes=50"],
  },
  {
    name: "svid",
    args: ["spire/svid_bench.ts", "--samples=200"],
    quick: ["spire/svid_bench.ts", "--samples=20"],
  },
  {
    name: "webhook",
    args: ["webhook/mutate_bench.ts", "--rounds=1", "--seconds=5"],
    quick: [
      "webhook/mutate_bench.ts",
      "--rounds=1",
      "--seconds=1",
      "--rates=50,200",
      "--recovery-seconds=5",
      "--slow-uploads=20",
      "--big-reviews=5",
    ],
  },
  {
    name: "csi",
    args: ["bench/publish_bench.ts", "--rounds=3"],
    quick: [
      "bench/publish_bench.ts",
      "--rounds=1",
      "--sizes=1,20",
      "--publishes=10",
      "--families=debian,alpine",
      "--bundled-sizes=1,20",
      "--ctb-sizes=1,20",
    ],
  },
  {
    name: "memory-floor",
    args: ["bench/memory_floor_bench.ts"],
    quick: ["bench/memory_floor_bench.ts"],
  },
  {
    name: "csi-imports",
    args: ["bench/driver_memory_bench.ts"],
    quick: ["bench/driver_memory_bench.ts", "--settle-ms=500"],
  },
  {
    name: "idle-programs",
    args: ["bench/idle_programs_bench.ts", "--runs=3"],
    quick: ["bench/idle_programs_bench.ts", "--runs=1"],
  },
  {
    name: "rotation",
    args: ["bench/rotation_bench.ts", "--rotations=100"],
    quick: ["bench/rotation_bench.ts", "--rotations=5"],
  },
  {
    name: "trust-restart",
    args: ["bench/trust_restart_bench.ts", "--workloads=2000"],
    quick: ["bench/trust_restart_bench.ts", "--workloads=100"],
  },
  {
    name: "admission-load",
    args: ["bench/admission_load_bench.ts", "--rates=50,200", "--seconds=60"],
    quick: ["bench/admission_load_bench.ts", "--rates=50", "--seconds=5", "--closed-seconds=5"],
  },
  {
    name: "keepalive",
    args: ["bench/keepalive_bench.ts"],
    quick: ["bench/keepalive_bench.ts", "--gaps=1,6", "--window=12"],
  },
];

/** How the figures were taken; printed before them in the report. */
const NOTES = `
## How to read this

- **webhook**: \`webhook/main.ts\` and a bare TLS echo (the same \`node:https\` + fetch adapter
  stack, echoing the body) run as child processes; fixed rates are open-loop over keep-alive
  connections, latency from handing the request to \`node:https\` to the end of the response.
  Max throughput is closed-loop with 32 requests in flight.
- **NodePublishVolume**: csi-churn (grpc-go, the client library kubelet uses) publishes new
  volumes on one connection to \`csi/main.ts\` on a unix socket, one OS family at a time; the
  baseline is NodeGetCapabilities on the same connection. The driver talks to a real
  kube-apiserver + etcd from the test harness.
- **Secret change → swapped store**: the Secret is replaced through the apiserver; each volume's
  time is its "trust store written" log line (wall clock, ms resolution) minus the update call.
  Volumes are plain directories on one tmpfs (\`--plain-dir\`). The first driver's stores hold
  only the referenced CA (\`--base-roots=none\`, the SPIRE-bundle case, 4 files per debian
  store); a second driver with \`--base-roots=bundled\` (the driver's default: ~140 public roots,
  ~280 files per store) is timed at 1 and 100 volumes. The *AtomicWriter swap alone* section
  shows the per-volume file-system cost of both store sizes without the driver around it.
- **memory**: VmRSS / VmHWM from \`/proc/<pid>/status\` of the program's own Deno process. The
  baseline is a bare \`deno eval\` process that does nothing, measured in the same run: the
  runtime alone takes most of the 100 MB idle budget.
- **rotation**: a new leaf from the same CA is written into the spiffe-helper directory every
  100 ms the way spiffe-helper writes it (in place, three files, torn states visible) while
  requests arrive at 100/s, each on a new TLS connection so every handshake uses the current
  certificate. "Distinct certificates served" shows the rotations took effect (the watchers
  debounce, so not every one of them is served).
- **trust restart**: \`webhook/main.ts\` with its controllers against a real kube-apiserver
  holding 2,000 annotated Deployments of the managed class; the baseline is the same program idle
  with no workloads, measured in the same run. Times are until every Deployment carries the
  recorded CA set, and from a CA added to SPIRE's bundle ConfigMap until every one was rolled out
  (settle delay 1 s, subtracted).
- **admission load**: pods created over HTTP/2 through a real kube-apiserver + etcd, open-loop,
  with \`webhook/main.ts\` (the Deployment's args and env, in a cgroup v1 memory cgroup capped
  at its \`limits.memory\`) registered by the shipped MutatingWebhookConfiguration and its SVID
  rotating every 2 s. The baseline is unlabelled pods created in the same window, which the
  objectSelector keeps away from the webhook. Memory is the cgroup's \`max_usage_in_bytes\`.
  Capacity is a closed loop (32 creates in flight), labelled then unlabelled; webhook CPU is its
  utime + stime over the window divided by the labelled creates.
`;

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** Runs one step, echoing its output; returns its records and exit code. */
async function runStep(
  step: Step,
  args: string[],
  timeoutMs: number,
): Promise<{ records: BenchRecord[]; code: number; detail: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => {
    console.error(`${step.name}: no result after ${timeoutMs / 1000} s, sending SIGTERM`);
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
  }, timeoutMs);
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    const s = decoder.decode(chunk, { stream: true });
    text += s;
    await Deno.stdout.write(chunk);
  }
  const { code } = await child.status;
  clearTimeout(timer);
  let records: BenchRecord[] = [];
  let detail = code === 0 ? "" : `exit code ${code}`;
  try {
    records = parseBenchLines(text);
  } catch (e) {
    detail = (e as Error).message;
  }
  const command = `./scripts/deno run -A ${args.join(" ")}`;
  for (const r of records) r.command ??= command;
  return { records, code, detail };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string" },
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      out: { type: "string" },
      "step-timeout": { type: "string", default: "900" },
    },
  });
  const quick = values.quick;
  const runs = Number(values.runs ?? (quick ? 1 : 5));
  if (!Number.isInteger(runs) || runs < 1) {
    console.error(`--runs: a positive integer, got ${values.runs}`);
    return 2;
  }
  const only = values.only?.split(",").map((s) => s.trim());
  const steps = only ? STEPS.filter((s) => only.includes(s.name)) : STEPS;
  if (steps.length === 0) {
    console.error(`--only: none of ${only} is a step (${STEPS.map((s) => s.name).join(", ")})`);
    return 2;
  }
  const out = values.out ??
    (quick ? join(await Deno.makeTempDir({ prefix: "bench-quick-" }), "benchmarks.md") : join(
      ROOT,
      "docs/benchmarks.md",
    ));
  const machine = machineInfo();
  const started = new Date();
  const perRun: BenchRecord[][] = [];
  const failures: { step: string; detail: string }[] = [];
  for (let run = 1; run <= runs; run++) {
    const records: BenchRecord[] = [];
    for (const step of steps) {
      const args = quick ? step.quick : step.args;
      console.log(
        `\n=== run ${run}/${runs}: ${step.name}: ./scripts/deno run -A ${args.join(" ")}`,
      );
      const r = await runStep(step, args, Number(values["step-timeout"]) * 1000);
      records.push(...r.records);
      if (r.detail) failures.push({ step: `${step.name} (run ${run})`, detail: r.detail });
    }
    perRun.push(records);
  }
  machine.loadAfter = Deno.loadavg();
  const cmd = quick
    ? "./scripts/deno run -A bench/run.ts --quick"
    : `./scripts/deno task bench${values.runs ? ` --runs=${runs}` : ""}${
      only ? ` --only=${only.join(",")}` : ""
    }`;
  const figures = aggregate(perRun);
  console.log("\n=== targets (median over runs, min–max)");
  for (const f of figures.filter((f) => f.target)) {
    console.log(`${f.verdict} ${f.target!.text}: ${f.label} = ${formatSpread(f.value, f.unit)}`);
  }
  const markdown = renderMarkdown({
    figures,
    machine,
    started: started.toISOString(),
    durationS: (Date.now() - started.getTime()) / 1000,
    runs,
    command: cmd,
    failures,
    notes: NOTES,
  });
  await Deno.mkdir(dirname(out), { recursive: true });
  await Deno.writeTextFile(out, markdown);
  // Align the tables the way `deno fmt` does, so the committed report passes `deno fmt --check`.
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", out], cwd: ROOT }).output();
  console.log(`\nwrote ${out}${failures.length ? ` (${failures.length} step failure(s))` : ""}`);
  return failures.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
