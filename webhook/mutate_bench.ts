/**
 * Latency and throughput of `/mutate` over TLS, against a bare TLS echo on the same stack
 * (`node:https` + the same request adapter, `@hono/node-server`'s `getRequestListener`) measured in
 * the same run.
 *
 * ```sh
 * ./scripts/deno run -A webhook/mutate_bench.ts [--seconds 5] [--rates 50,200,1000] [--rounds 3]
 * ./scripts/deno bench -A webhook/mutate_bench.ts   # the in-memory handler only
 * ```
 *
 * Both servers run as child processes so the load generator does not share their event loop.
 * Fixed-rate phases are open-loop (requests leave on schedule whether or not earlier ones
 * answered); latency runs from the moment a request is handed to `node:https` to the end of
 * its response (client timer lateness is left out, server-side queueing is not). The
 * throughput phase is closed-loop with 32 requests in flight over keep-alive connections.
 * Resident memory of the webhook process (VmRSS idle after start, VmHWM after all load) is read
 * from `/proc`. Every figure is also printed as a `BENCH {json}` line (see bench/report.ts).
 *
 * @module
 */

import { Agent, createServer, request } from "node:https";
import { ANNOTATION_PREFIX, ANNOTATIONS, DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { getRequestListener } from "@hono/node-server";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApp } from "./app.ts";
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "5" },
      rates: { type: "string", default: "50,200,1000" },
      rounds: { type: "string", default: "3" },
      "serve-echo": { type: "string" },
      "cert-dir": { type: "string" },
    },
  });
  if (values["serve-echo"] !== undefined) {
    serveEcho(values["cert-dir"]!, Number(values["serve-echo"]));
    return;
  }
  const seconds = Number(values.seconds);
  const rates = values.rates.split(",").map(Number);
  const rounds = Number(values.rounds);
  const dir = await Deno.makeTempDir({ prefix: "webhook-bench-" });
  const children: Deno.ChildProcess[] = [];
  try {
    const ca = await writeCertDir(dir);
    const [webhookPort, healthPort, echoPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const here = new URL(".", import.meta.url).pathname;
    const spawn = (args: string[]) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", ...args],
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
      "--log-level=warn",
    ]);
    spawn([join(here, "mutate_bench.ts"), `--serve-echo=${echoPort}`, `--cert-dir=${dir}`]);
    await waitReady(`http://127.0.0.1:${healthPort}/readyz`);
    // Idle: started, serving, nothing asked of it yet but the readiness probe.
    await delay(2000);
    console.log(benchLine({
      id: "mem.webhook.idle",
      section: MEMORY,
      label: "webhook idle",
      unit: "MB",
      value: readRss(webhook.pid).rssMB,
      baseline: await bareDenoRssMB(),
      baselineLabel: "bare Deno process, idle",
      target: { max: 80, text: "≤ 80 MB resident idle" },
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
      const sampler = setTimeout(() => {
        underLoad = Math.max(underLoad, readRss(webhook.pid).rssMB);
      }, (seconds * 1000) / 2);
      const m = await maxThroughput(mutate, ca, seconds);
      clearTimeout(sampler);
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
    const rss = readRss(webhook.pid);
    console.log(benchLine({
      id: "mem.webhook.load",
      section: MEMORY,
      label: "webhook under load (VmRSS mid max-throughput phase)",
      unit: "MB",
      value: underLoad || rss.rssMB,
    }));
    console.log(benchLine({
      id: "mem.webhook.peak",
      section: MEMORY,
      label: "webhook peak after all load phases (VmHWM)",
      unit: "MB",
      value: rss.hwmMB,
    }));
  } finally {
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
