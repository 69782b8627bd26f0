/**
 * Latency, throughput and resident memory of `/mutate` over TLS, against a bare TLS echo on the
 * same stack (`node:https` + the same request adapter, `@hono/node-server`'s
 * `getRequestListener`) measured in the same run.
 *
 * ```sh
 * ./scripts/deno run -A webhook/mutate_bench.ts [--seconds 5] [--rates 50,200,1000] [--rounds 3]
 *     [--recovery-seconds 60] [--slow-uploads 80] [--big-reviews 20] [--v8-flags FLAGS|none]
 * ./scripts/deno bench -A webhook/mutate_bench.ts   # the in-memory handler only
 * ```
 *
 * Both servers run as child processes so the load generator does not share their event loop,
 * with the webhook container's `DENO_V8_FLAGS` read from manifests/webhook/deployment.yaml (so
 * the bench runs what ships; `--v8-flags` overrides them to compare settings) and, where this
 * process may make a cgroup v1 memory cgroup (root), the webhook inside one capped at the
 * manifest's `limits.memory`, as kubelet would: an OOM kill there is counted, not hidden by a
 * roomy machine. Fixed-rate phases are open-loop (requests leave on schedule whether or not
 * earlier ones answered); latency runs from the moment a request is handed to `node:https` to the
 * end of its response. The throughput phase is closed-loop with 32 requests in flight over
 * keep-alive connections.
 *
 * Memory phases, each with its peak resident set (VmHWM, reset through `/proc/<pid>/clear_refs`
 * at the start of the phase) against a share of the manifest's limit: max throughput (≤ 50 %),
 * a minute of rest after it (VmRSS back within 10 % of idle), `--slow-uploads` clients each
 * declaring a 3 MiB body and trickling it at 160 KB/s, and `--big-reviews` concurrent 3 MiB
 * AdmissionReviews (both ≤ 75 %, and every request ended, answered, refused or cut off, within
 * the apiserver's 5 s `timeoutSeconds`; those cut off are counted). Every figure
 * is also printed as a `BENCH {json}` line (see bench/report.ts).
 *
 * @module
 */

import { Agent, createServer, request } from "node:https";
import { connect as tlsConnect } from "node:tls";
import { loadAllYaml } from "@kubernetes/client-node";
import { ANNOTATION_PREFIX, ANNOTATIONS, DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { getRequestListener } from "@hono/node-server";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApp, DEFAULT_MAX_BODY_BYTES } from "./app.ts";
import { parseMemoryQuantity } from "../cli/heap_flags.ts";
import { MemoryCgroup } from "../tests/harness/cgroup.ts";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { podCreateReview } from "./testdata/admission_review.ts";
import { benchLine } from "../bench/report.ts";
import { bareDenoRssMB, readRss } from "../bench/proc.ts";
import { setTimeout as delay } from "node:timers/promises";

const SECTION = "webhook /mutate over TLS";
const MEMORY = "resident memory (VmRSS; peak = VmHWM)";

const REVIEW = JSON.stringify(podCreateReview({
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: "bench",
    namespace: "default",
    labels: { [INJECT_LABEL]: "true", app: "bench" },
    annotations: { [ANNOTATION_PREFIX + ANNOTATIONS.env]: "true" },
  },
  spec: {
    initContainers: [{ name: "init", image: "busybox:1.36" }],
    containers: [
      {
        name: "app",
        image: "example/app:1",
        env: [{ name: "A", value: "1" }],
        volumeMounts: [{ name: "data", mountPath: "/data" }],
      },
      { name: "sidecar", image: "example/sidecar:1" },
    ],
    volumes: [{ name: "data", emptyDir: {} }],
  },
}, { uid: "bench" }));

const CONFIG = { driverName: DRIVER_NAME, className: "spire-ca" };

if (!import.meta.main) {
  const app = createApp(CONFIG);
  Deno.bench("mutate handler in memory (app.request)", async () => {
    const response = await app.request("/mutate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: REVIEW,
    });
    await response.arrayBuffer();
  });
}

/** A bare TLS echo on the same stack as the webhook: node:https + the fetch adapter. */
function serveEcho(certDir: string, port: number): void {
  const cert = Deno.readTextFileSync(join(certDir, "svid.pem"));
  const key = Deno.readTextFileSync(join(certDir, "svid_key.pem"));
  const server = createServer(
    { cert, key },
    getRequestListener(
      async (req) =>
        new Response(await req.arrayBuffer(), { headers: { "content-type": "application/json" } }),
      { overrideGlobalObjects: false },
    ),
  );
  server.listen(port, "127.0.0.1", () => console.log("listening"));
}

interface Target {
  name: string;
  port: number;
}

function send(agent: Agent, port: number, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      servername: "localhost",
      ca,
      agent,
      method: "POST",
      path: "/mutate",
      headers: { "content-type": "application/json", "content-length": REVIEW.length },
    }, (res) => {
      res.on("data", () => {});
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(REVIEW);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function fixedRate(target: Target, ca: string, rate: number, seconds: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const latencies: number[] = [];
  let errors = 0;
  const total = rate * seconds;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await delay(wait);
    const sent = performance.now();
    pending.push(
      send(agent, target.port, ca).then(
        (status) => {
          if (status !== 200) errors++;
          latencies.push(performance.now() - sent);
        },
        () => {
          errors++;
        },
      ),
    );
  }
  await Promise.all(pending);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    achieved: total / ((performance.now() - start) / 1000),
    errors,
  };
}

async function maxThroughput(target: Target, ca: string, seconds: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  const worker = async () => {
    while (performance.now() < end) {
      try {
        if ((await send(agent, target.port, ca)) === 200) done++;
        else errors++;
      } catch {
        errors++;
      }
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: 32 }, worker));
  agent.destroy();
  return { rps: done / ((performance.now() - start) / 1000), errors };
}

/** A CA and a `localhost` leaf written in spiffe-helper's file names; returns the CA PEM. */
async function writeCertDir(dir: string): Promise<string> {
  const ca = await DevCa.create();
  const leaf = await ca.issue({
    spiffeId: "spiffe://example.org/workload/webhook",
    dnsNames: ["localhost"],
    ttlMs: 86_400_000,
  });
  await writeSvidFiles(dir, { ...leaf, bundlePem: ca.certPem });
  return ca.certPem;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch { /* not listening yet */ }
    await delay(100);
  }
  throw new Error(`${url} never became ready`);
}

/** What the webhook container of manifests/webhook/deployment.yaml is given. */
interface ManifestMemory {
  /** Its `DENO_V8_FLAGS` env value. */
  v8Flags: string;
  /** `resources.limits.memory` as written. */
  limit: string;
  /** The same in bytes. */
  limitBytes: number;
}

/** The shipped manifest has no webhook container with DENO_V8_FLAGS and a memory limit. */
class ManifestMemoryError extends Error {
  constructor(message: string) {
    super(`manifests/webhook/deployment.yaml: ${message}`);
    this.name = "ManifestMemoryError";
  }
}

interface ManifestContainer {
  name: string;
  env?: { name: string; value?: string }[];
  resources?: { limits?: { memory?: string } };
}

function readManifestMemory(): ManifestMemory {
  const path = new URL("../manifests/webhook/deployment.yaml", import.meta.url);
  const [deployment] = loadAllYaml(Deno.readTextFileSync(path)) as {
    spec: { template: { spec: { containers: ManifestContainer[] } } };
  }[];
  const container = deployment.spec.template.spec.containers.find((c) => c.name === "webhook");
  if (!container) throw new ManifestMemoryError("no container named webhook");
  const v8Flags = container.env?.find((e) => e.name === "DENO_V8_FLAGS")?.value;
  const limit = container.resources?.limits?.memory;
  if (v8Flags === undefined) throw new ManifestMemoryError("webhook has no DENO_V8_FLAGS value");
  if (limit === undefined) throw new ManifestMemoryError("webhook has no limits.memory");
  return { v8Flags, limit, limitBytes: parseMemoryQuantity(limit) };
}

/** A pod CREATE review of exactly `bytes` bytes: env entries, as a large real pod would be. */
function bigReview(bytes: number): string {
  const env: { name: string; value: string }[] = [];
  const review = (extra: string) =>
    JSON.stringify(podCreateReview({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: "big",
        namespace: "default",
        labels: { [INJECT_LABEL]: "true" },
        annotations: { [ANNOTATION_PREFIX + ANNOTATIONS.env]: "true", pad: extra },
      },
      spec: { containers: [{ name: "app", image: "example/app:1", env }] },
    }, { uid: "big" }));
  // Each entry adds its JSON and a comma; stringifying the whole review per entry is quadratic.
  let size = review("").length;
  for (let i = 0; size < bytes - 64; i++) {
    const entry = { name: `VARIABLE_${i}`, value: `value-${i}-${"v".repeat(16)}` };
    size += JSON.stringify(entry).length + (env.length > 0 ? 1 : 0);
    env.push(entry);
  }
  if (review("").length > bytes) env.pop();
  const text = review("x".repeat(bytes - review("").length));
  if (text.length !== bytes) throw new Error(`big review is ${text.length} bytes, not ${bytes}`);
  return text;
}

/** Resets VmHWM of `pid` (root only); says whether it could. */
function resetPeak(pid: number): boolean {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** Samples VmRSS of `pid` every `everyMs` until stopped; the stop returns the largest (MB). */
function sampleRss(pid: number, everyMs = 100): () => number {
  let max = 0;
  const timer = setInterval(() => {
    try {
      max = Math.max(max, readRss(pid).rssMB);
    } catch { /* exited: the caller sees it */ }
  }, everyMs);
  return () => {
    clearInterval(timer);
    return Math.max(max, readRss(pid).rssMB);
  };
}

/** How one request of a burst ended. */
interface Outcome {
  /** HTTP status, or 0 when the connection ended without one. */
  status: number;
  /** Milliseconds from the start of the burst to the status (or the end of the connection). */
  ms: number;
}

/**
 * One client that declares `bytes` and sends them `chunk` bytes per `intervalMs` over its own TLS
 * connection, stopping at the first byte of the response.
 */
function slowUpload(
  port: number,
  ca: string,
  bytes: number,
  chunk: number,
  intervalMs: number,
  start: number,
): Promise<Outcome> {
  return new Promise((resolve) => {
    let timer: ReturnType<typeof setInterval> | undefined;
    let answer = "";
    let settled = false;
    const finish = (status: number) => {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      socket.destroy();
      resolve({ status, ms: performance.now() - start });
    };
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", ca }, () => {
      socket.write(
        `POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
          `content-length: ${bytes}\r\n\r\n`,
      );
      const piece = "x".repeat(chunk);
      let sent = 0;
      timer = setInterval(() => {
        if (sent >= bytes) return clearInterval(timer);
        const n = Math.min(chunk, bytes - sent);
        sent += n;
        socket.write(n === chunk ? piece : piece.slice(0, n));
      }, intervalMs);
    });
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      answer += text;
      const status = answer.match(/^HTTP\/1\.1 (\d{3}) /)?.[1];
      if (status) finish(Number(status));
    });
    socket.on("error", () => finish(0));
    socket.on("close", () => finish(0));
  });
}

/**
 * One request with `body` on its own TLS connection, reading while it writes (as Go's
 * `net/http`, the apiserver's client, does): a 429 sent before the body is through still counts.
 */
function sendOnce(port: number, ca: string, body: string, start: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let answer = "";
    let status = 0;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ status, ms: performance.now() - start });
    };
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", ca }, () => {
      socket.write(
        `POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
          `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
      );
      // 64 KiB at a time, each after the last has drained: the answer is read in between.
      let offset = 0;
      const next = () => {
        while (!settled && offset < body.length) {
          const piece = body.slice(offset, offset + 65536);
          offset += piece.length;
          if (!socket.write(piece)) return void socket.once("drain", next);
        }
      };
      next();
    });
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      answer += text;
      status ||= Number(answer.match(/^HTTP\/1\.1 (\d{3}) /)?.[1] ?? 0);
      // Headers and the whole (small, JSON) answer: Content-Length bytes after the blank line.
      const head = answer.indexOf("\r\n\r\n");
      const length = Number(answer.match(/\r\ncontent-length: (\d+)/i)?.[1] ?? NaN);
      if (status && head >= 0 && answer.length >= head + 4 + length) finish();
    });
    socket.on("error", finish);
    socket.on("close", finish);
  });
}

/** `status: count` pairs of a burst, in status order, e.g. `200: 8, 429: 12`. */
function tally(outcomes: Outcome[]): string {
  const counts = new Map<number, number>();
  for (const o of outcomes) counts.set(o.status, (counts.get(o.status) ?? 0) + 1);
  return [...counts].sort(([a], [b]) => a - b)
    .map(([status, n]) => `${status === 0 ? "no status" : status}: ${n}`).join(", ");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "5" },
      rates: { type: "string", default: "50,200,1000" },
      rounds: { type: "string", default: "3" },
      "recovery-seconds": { type: "string", default: "60" },
      "slow-uploads": { type: "string", default: "80" },
      "big-reviews": { type: "string", default: "20" },
      "v8-flags": { type: "string" },
      "serve-echo": { type: "string" },
      "cert-dir": { type: "string" },
    },
  });
  if (values["serve-echo"] !== undefined) {
    serveEcho(values["cert-dir"]!, Number(values["serve-echo"]));
    return;
  }
  const seconds = Number(values.seconds);
  const rates = values.rates.split(",").filter(Boolean).map(Number);
  const rounds = Number(values.rounds);
  const recoverySeconds = Number(values["recovery-seconds"]);
  const slowCount = Number(values["slow-uploads"]);
  const bigCount = Number(values["big-reviews"]);
  const manifest = readManifestMemory();
  const v8Flags = values["v8-flags"] ?? manifest.v8Flags;
  const limitMB = manifest.limitBytes / 1e6;
  const share = (fraction: number) => Math.round(limitMB * fraction);
  const dir = await Deno.makeTempDir({ prefix: "webhook-bench-" });
  const children: Deno.ChildProcess[] = [];
  let cgroup: MemoryCgroup | undefined;
  try {
    cgroup = MemoryCgroup.create("webhook-bench");
    cgroup.setLimit(manifest.limitBytes);
  } catch (error) {
    console.log(`no memory cgroup (${(error as Error).message}); the webhook runs uncapped`);
    await cgroup?.remove().catch(() => {});
    cgroup = undefined;
  }
  try {
    const ca = await writeCertDir(dir);
    const [webhookPort, healthPort, echoPort] = [freePort(), freePort(), freePort()];
    const here = new URL(".", import.meta.url).pathname;
    const env: Record<string, string> = v8Flags === "none" ? {} : { DENO_V8_FLAGS: v8Flags };
    const spawn = (args: string[], capped = false) => {
      const argv = [Deno.execPath(), "run", "-A", ...args];
      const [program, ...rest] = capped && cgroup ? cgroup.wrap(argv) : argv;
      const child = new Deno.Command(program, {
        args: rest,
        env,
        stdout: "null",
        stderr: "null",
      }).spawn();
      children.push(child);
      return child;
    };
    const webhook = spawn([
      join(here, "main.ts"),
      `--port=${webhookPort}`,
      `--health-port=${healthPort}`,
      "--bind-address=127.0.0.1",
      `--cert-dir=${dir}`,
      "--controller=false",
      "--log-level=error",
    ], true);
    spawn([join(here, "mutate_bench.ts"), `--serve-echo=${echoPort}`, `--cert-dir=${dir}`]);
    await waitReady(`http://127.0.0.1:${healthPort}/readyz`);
    console.log(
      `webhook: DENO_V8_FLAGS=${v8Flags}${values["v8-flags"] ? " (--v8-flags)" : " (manifest)"}` +
        `, ${cgroup ? `memory cgroup capped at ${manifest.limit}` : "no memory cgroup"}; ` +
        `manifest limit ${manifest.limit} = ${limitMB.toFixed(0)} MB`,
    );
    // Idle: started, serving, nothing asked of it yet but the readiness probe.
    await delay(2000);
    const idle = readRss(webhook.pid).rssMB;
    console.log(benchLine({
      id: "mem.webhook.idle",
      section: MEMORY,
      label: "webhook idle",
      unit: "MB",
      value: idle,
      baseline: await bareDenoRssMB(),
      baselineLabel: "bare Deno process, idle",
      target: { max: 100, text: "≤ 100 MB resident idle" },
    }));
    const mutate: Target = { name: "/mutate", port: webhookPort };
    const echo: Target = { name: "TLS echo", port: echoPort };
    // Warm both up (JIT, TLS session set-up).
    await maxThroughput(mutate, ca, 1);
    await maxThroughput(echo, ca, 1);

    console.log(
      `AdmissionReview body: ${REVIEW.length} bytes; ${seconds} s per phase, ${rounds} rounds ` +
        `alternating /mutate and the echo so both see the same machine load; medians shown; ` +
        `load average ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")} on ` +
        `${navigator.hardwareConcurrency} cores`,
    );
    console.log("target      rate/s  achieved/s   p50 ms   p99 ms  errors  (p99 per round)");
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    for (const rate of rates) {
      const results = new Map<Target, Awaited<ReturnType<typeof fixedRate>>[]>();
      for (let round = 0; round < rounds; round++) {
        for (const target of [mutate, echo]) {
          const list = results.get(target) ?? [];
          list.push(await fixedRate(target, ca, rate, seconds));
          results.set(target, list);
        }
      }
      const m = results.get(mutate)!;
      const e = results.get(echo)!;
      for (const q of ["p50", "p99"] as const) {
        console.log(benchLine({
          id: `webhook.${q}@${rate}`,
          section: SECTION,
          label: `/mutate ${q} at ${rate} req/s`,
          unit: "ms",
          value: median(m.map((r) => r[q])),
          baseline: median(e.map((r) => r[q])),
          baselineLabel: `bare TLS echo ${q}`,
          target: q === "p99" && rate === 200
            ? { max: 5, text: "p99 ≤ 5 ms at 200 req/s" }
            : undefined,
        }));
      }
      console.log(benchLine({
        id: `webhook.errors@${rate}`,
        section: SECTION,
        label: `/mutate failed requests at ${rate} req/s`,
        unit: "requests",
        value: m.reduce((sum, r) => sum + r.errors, 0),
        baseline: e.reduce((sum, r) => sum + r.errors, 0),
        baselineLabel: "echo failed requests",
      }));
      for (const [target, list] of results) {
        const errors = list.reduce((sum, r) => sum + r.errors, 0);
        console.log(
          `${target.name.padEnd(10)} ${String(rate).padStart(7)} ${
            median(list.map((r) => r.achieved)).toFixed(0).padStart(11)
          } ${median(list.map((r) => r.p50)).toFixed(2).padStart(8)} ${
            median(list.map((r) => r.p99)).toFixed(2).padStart(8)
          } ${String(errors).padStart(7)}  (${list.map((r) => r.p99.toFixed(1)).join(", ")})`,
        );
      }
    }
    const ratios: string[] = [];
    let mutateTotal = 0;
    let echoTotal = 0;
    let underLoad = 0;
    for (let round = 0; round < rounds; round++) {
      resetPeak(webhook.pid);
      const stop = sampleRss(webhook.pid);
      const m = await maxThroughput(mutate, ca, seconds);
      underLoad = Math.max(underLoad, stop(), readRss(webhook.pid).hwmMB);
      const e = await maxThroughput(echo, ca, seconds);
      mutateTotal += m.rps;
      echoTotal += e.rps;
      ratios.push(`${m.rps.toFixed(0)}/${e.rps.toFixed(0)}`);
    }
    console.log(
      `max throughput (32 in flight, keep-alive): /mutate ${
        (mutateTotal / rounds).toFixed(0)
      }/s, ` +
        `TLS echo ${(echoTotal / rounds).toFixed(0)}/s, ratio ${
          (mutateTotal / echoTotal).toFixed(2)
        } ` +
        `(per round /mutate/echo ${ratios.join(", ")})`,
    );
    console.log(benchLine({
      id: "webhook.maxrps",
      section: SECTION,
      label: "/mutate max throughput (32 in flight, keep-alive), req/s",
      unit: "req/s",
      value: mutateTotal / rounds,
      baseline: echoTotal / rounds,
      baselineLabel: "bare TLS echo, same stack",
    }));
    console.log(benchLine({
      id: "mem.webhook.load",
      section: MEMORY,
      label: "webhook peak during max throughput (VmHWM of the phase)",
      unit: "MB",
      value: underLoad,
      target: { max: share(0.5), text: `≤ 50 % of the ${manifest.limit} limit (${share(0.5)} MB)` },
    }));

    // A minute without load: what the process gives back.
    await delay(recoverySeconds * 1000);
    console.log(benchLine({
      id: "mem.webhook.recovered",
      section: MEMORY,
      label: `webhook ${recoverySeconds} s after the load stopped (VmRSS)`,
      unit: "MB",
      value: readRss(webhook.pid).rssMB,
      baseline: idle,
      baselineLabel: "the same webhook idle before any load",
      target: { max: Math.round(idle * 1.1), text: "within 10 % of idle a minute after load" },
    }));

    // Slow uploads: each declares a 3 MiB body and trickles it, 16 KiB every 100 ms.
    if (slowCount > 0) {
      resetPeak(webhook.pid);
      const stop = sampleRss(webhook.pid);
      const start = performance.now();
      const slow = await Promise.all(
        Array.from(
          { length: slowCount },
          () => slowUpload(webhookPort, ca, DEFAULT_MAX_BODY_BYTES, 16 * 1024, 100, start),
        ),
      );
      const peak = Math.max(stop(), readRss(webhook.pid).hwmMB);
      const refused = slow.filter((o) => o.status === 429).map((o) => o.ms).sort((a, b) => a - b);
      console.log(
        `${slowCount} slow 3 MiB uploads: ${tally(slow)}; 429 after ${
          refused.length ? `${refused[0].toFixed(0)}–${refused.at(-1)!.toFixed(0)} ms` : "-"
        }, last answer after ${Math.max(...slow.map((o) => o.ms)).toFixed(0)} ms`,
      );
      console.log(benchLine({
        id: "mem.webhook.slow_uploads",
        section: MEMORY,
        label: `webhook peak under ${slowCount} slow 3 MiB uploads (VmHWM of the phase)`,
        unit: "MB",
        value: peak,
        target: {
          max: share(0.75),
          text: `≤ 75 % of the ${manifest.limit} limit (${share(0.75)} MB)`,
        },
      }));
      console.log(benchLine({
        id: "webhook.slow_uploads.last",
        section: SECTION,
        label: `last of ${slowCount} slow 3 MiB uploads answered (429 or 408) or cut off, ms`,
        unit: "ms",
        value: Math.max(...slow.map((o) => o.ms)),
        target: { max: 5000, text: "every one ended within the apiserver's 5 s timeoutSeconds" },
      }));
      console.log(benchLine({
        id: "webhook.slow_uploads.unanswered",
        section: SECTION,
        label: `slow 3 MiB uploads (of ${slowCount}) cut off without an HTTP status`,
        unit: "requests",
        value: slow.filter((o) => o.status === 0).length,
      }));
    }

    // Concurrent 3 MiB reviews, each on its own connection, three bursts.
    if (bigCount > 0) {
      const body = bigReview(DEFAULT_MAX_BODY_BYTES);
      resetPeak(webhook.pid);
      const stop = sampleRss(webhook.pid);
      const all: Outcome[] = [];
      for (let burst = 0; burst < 3; burst++) {
        const start = performance.now();
        const outcomes = await Promise.all(
          Array.from({ length: bigCount }, () => sendOnce(webhookPort, ca, body, start)),
        );
        all.push(...outcomes);
        console.log(
          `${bigCount} concurrent ${(body.length / 1048576).toFixed(1)} MiB reviews, burst ${
            burst + 1
          }: ${tally(outcomes)}; last answer after ${
            Math.max(...outcomes.map((o) => o.ms)).toFixed(0)
          } ms`,
        );
      }
      const peak = Math.max(stop(), readRss(webhook.pid).hwmMB);
      console.log(benchLine({
        id: "mem.webhook.big_reviews",
        section: MEMORY,
        label: `webhook peak under ${bigCount} concurrent 3 MiB reviews (VmHWM, 3 bursts)`,
        unit: "MB",
        value: peak,
        target: {
          max: share(0.75),
          text: `≤ 75 % of the ${manifest.limit} limit (${share(0.75)} MB)`,
        },
      }));
      console.log(benchLine({
        id: "webhook.big_reviews.admitted",
        section: SECTION,
        label: `3 MiB reviews admitted (of ${all.length}; the rest refused 429)`,
        unit: "requests",
        value: all.filter((o) => o.status === 200).length,
      }));
      console.log(benchLine({
        id: "webhook.big_reviews.last",
        section: SECTION,
        label: `slowest of ${all.length} 3 MiB reviews answered, refused or cut off, ms`,
        unit: "ms",
        value: Math.max(...all.map((o) => o.ms)),
        target: { max: 5000, text: "every one ended within the apiserver's 5 s timeoutSeconds" },
      }));
      // A refused body the adapter stops discarding after 500 ms is cut off (the client, still
      // writing, may see the reset before it reads the 429): ended, but without a status.
      console.log(benchLine({
        id: "webhook.big_reviews.unanswered",
        section: SECTION,
        label: `3 MiB reviews (of ${all.length}) cut off without an HTTP status`,
        unit: "requests",
        value: all.filter((o) => o.status === 0).length,
      }));
    }
    const alive = readRss(webhook.pid);
    if (cgroup) {
      const stats = cgroup.stats();
      console.log(
        `memory cgroup: peak usage ${(stats.peakBytes / 1e6).toFixed(0)} MB (page cache ` +
          `included) of ${(stats.limitBytes / 1e6).toFixed(0)} MB, OOM kills ${stats.oomKills}`,
      );
      console.log(benchLine({
        id: "mem.webhook.oom_kills",
        section: MEMORY,
        label: `OOM kills of the webhook in its ${manifest.limit} memory cgroup`,
        unit: "kills",
        value: stats.oomKills,
        target: { max: 0, text: "never OOM-killed" },
      }));
    }
    console.log(`webhook after all phases: VmRSS ${alive.rssMB.toFixed(0)} MB`);
  } finally {
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
    }
    await cgroup?.remove().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
