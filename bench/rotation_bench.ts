/**
 * Failed requests while certificates rotate under load, for the two TLS servers of the project:
 * the admission webhook (`webhook/main.ts`, POST /mutate) and the example workload server
 * (`workloads/server.ts`, GET /). Each runs as a child process serving the SVID in a
 * spiffe-helper directory; this process sends an open-loop stream of requests, each on a new TLS
 * connection (so every handshake picks up whatever certificate is current), while a new leaf
 * from the same dev CA is written into the directory every `--interval-ms`, the way
 * spiffe-helper writes it (truncate and rewrite in place, three files, torn states visible).
 * The baseline is the same load with no rotation, measured in the same run.
 *
 * Also measures resident memory of the example server (idle and after load) and the example
 * client (idle, one request a second).
 *
 * ```sh
 * ./scripts/deno run -A bench/rotation_bench.ts [--rotations=100] [--interval-ms=100] [--rate=100]
 * ```
 *
 * Target: 0 failed requests across the rotations. Prints `BENCH {json}` lines (bench/report.ts).
 *
 * @module
 */

import { request } from "node:https";
import type { TLSSocket } from "node:tls";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import { benchLine } from "./report.ts";
import { bareDenoRssMB, readRss } from "./proc.ts";
import { setTimeout as sleep } from "node:timers/promises";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SECTION = "failed requests while certificates rotate under load";
const MEMORY = "resident memory (VmRSS; peak = VmHWM)";

const REVIEW = JSON.stringify(podCreateReview({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "p", namespace: "default", labels: { app: "rotation" } },
  spec: { containers: [{ name: "app", image: "example/app:1" }] },
}, { uid: "rotation" }));

/** A server under test. */
interface Subject {
  name: "webhook" | "server";
  port: number;
  child: Deno.ChildProcess;
  method: "GET" | "POST";
  path: string;
}

/** What the load generator saw. */
interface LoadResult {
  sent: number;
  failed: number;
  errors: Map<string, number>;
  serials: Set<string>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function sendOnce(subject: Subject, ca: string): Promise<{ status: number; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port: subject.port,
      servername: "localhost",
      ca,
      agent: false, // a new connection, hence a new handshake, per request
      method: subject.method,
      path: subject.path,
      timeout: 5000,
      headers: subject.method === "POST"
        ? { "content-type": "application/json", "content-length": REVIEW.length }
        : {},
    }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate?.()?.serialNumber ?? "";
      res.on("data", () => {});
      res.on("end", () => resolve({ status: res.statusCode ?? 0, serial }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(subject.method === "POST" ? REVIEW : undefined);
  });
}

/** Open-loop load at `rate` requests/s until `stop()` resolves. */
async function load(
  subject: Subject,
  ca: string,
  rate: number,
  until: Promise<void>,
): Promise<LoadResult> {
  const result: LoadResult = { sent: 0, failed: 0, errors: new Map(), serials: new Set() };
  let done = false;
  until.then(() => (done = true));
  const pending: Promise<void>[] = [];
  const start = performance.now();
  while (!done) {
    const due = start + (result.sent * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    if (done) break;
    result.sent++;
    pending.push(
      sendOnce(subject, ca).then(
        ({ status, serial }) => {
          result.serials.add(serial);
          if (status !== 200) {
            result.failed++;
            const key = `HTTP ${status}`;
            result.errors.set(key, (result.errors.get(key) ?? 0) + 1);
          }
        },
        (error: Error) => {
          result.failed++;
          const key = error.message.slice(0, 80);
          result.errors.set(key, (result.errors.get(key) ?? 0) + 1);
        },
      ),
    );
  }
  await Promise.all(pending);
  return result;
}

async function waitServing(subject: Subject, ca: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await sendOnce(subject, ca)).status === 200) return;
    } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${subject.name} never served on port ${subject.port}`);
}

function spawn(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function stopChild(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  await child.status;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rotations: { type: "string", default: "100" },
      "interval-ms": { type: "string", default: "100" },
      rate: { type: "string", default: "100" },
    },
  });
  const rotations = Number(values.rotations);
  const intervalMs = Number(values["interval-ms"]);
  const rate = Number(values.rate);
  const bare = await bareDenoRssMB();
  for (const name of ["webhook", "server"] as const) {
    const dir = await Deno.makeTempDir({ prefix: `rotation-${name}-` });
    const children: Deno.ChildProcess[] = [];
    try {
      const ca = await DevCa.create();
      const issue = () =>
        ca.issue({
          spiffeId: `spiffe://example.org/workload/${name}`,
          dnsNames: ["localhost"],
          ttlMs: 3_600_000,
        });
      await writeSvidFiles(dir, { ...(await issue()), bundlePem: ca.certPem });
      const port = freePort();
      const child = name === "webhook"
        ? spawn([
          "webhook/main.ts",
          `--port=${port}`,
          `--health-port=${freePort()}`,
          "--bind-address=127.0.0.1",
          `--cert-dir=${dir}`,
          "--controller=false",
          "--log-level=warn",
        ])
        : spawn(["workloads/server.ts", `--cert-dir=${dir}`, `--port=${port}`, "--host=127.0.0.1"]);
      children.push(child);
      const subject: Subject = name === "webhook"
        ? { name, port, child, method: "POST", path: "/mutate" }
        : { name, port, child, method: "GET", path: "/" };
      await waitServing(subject, ca.certPem);
      if (name === "server") {
        await sleep(2000);
        console.log(benchLine({
          id: "mem.server.idle",
          section: MEMORY,
          label: "example server (workloads/server.ts) idle",
          unit: "MB",
          value: readRss(child.pid).rssMB,
          baseline: bare,
          baselineLabel: "bare Deno process, idle",
          target: { max: 80, text: "≤ 80 MB resident idle" },
        }));
        const client = spawn([
          "workloads/client.ts",
          `--cert-dir=${dir}`,
          `--server-address=https://127.0.0.1:${port}`,
          "--server-name=localhost",
          "--interval=1s",
        ]);
        children.push(client);
        await sleep(4000);
        console.log(benchLine({
          id: "mem.client.idle",
          section: MEMORY,
          label: "example client (workloads/client.ts), one request a second",
          unit: "MB",
          value: readRss(client.pid).rssMB,
          baseline: bare,
          baselineLabel: "bare Deno process, idle",
          target: { max: 80, text: "≤ 80 MB resident idle" },
        }));
        await stopChild(client);
        children.pop();
      }
      // Baseline: the same load for the same time, nothing rotating.
      const seconds = (rotations * intervalMs) / 1000 + 1;
      const quiet = await load(subject, ca.certPem, rate, sleep(seconds * 1000));
      // Rotating: a new leaf every interval, written as spiffe-helper does.
      let rotated = 0;
      const rotator = (async () => {
        await sleep(500);
        while (rotated < rotations) {
          const t = performance.now();
          await writeSvidFiles(dir, { ...(await issue()), bundlePem: ca.certPem });
          rotated++;
          await sleep(Math.max(0, intervalMs - (performance.now() - t)));
        }
        await sleep(500);
      })();
      const busy = await load(subject, ca.certPem, rate, rotator);
      const errors = [...busy.errors].map(([k, v]) => `${v}× ${k}`).join("; ");
      console.log(
        `${name}: ${rotated} rotations every ${intervalMs} ms, ${busy.sent} requests at ${rate}/s ` +
          `on new TLS connections: ${busy.failed} failed${errors ? ` (${errors})` : ""}; ` +
          `${busy.serials.size} distinct certificates served; without rotation ${quiet.failed} ` +
          `of ${quiet.sent} failed`,
      );
      console.log(benchLine({
        id: `rotation.${name}.failed`,
        section: SECTION,
        label: `${name === "webhook" ? "webhook POST /mutate" : "example server GET /"}: ` +
          `failed requests (${rate}/s, new connection each) during ${rotated} rotations every ` +
          `${intervalMs} ms`,
        unit: "requests",
        value: busy.failed,
        baseline: quiet.failed,
        baselineLabel: "same load, no rotation",
        target: { max: 0, text: "0 failed requests across rotations" },
      }));
      console.log(benchLine({
        id: `rotation.${name}.sent`,
        section: SECTION,
        label: `${name}: requests sent during the rotations`,
        unit: "requests",
        value: busy.sent,
        baseline: quiet.sent,
        baselineLabel: "same load, no rotation",
      }));
      console.log(benchLine({
        id: `rotation.${name}.served`,
        section: SECTION,
        label: `${name}: distinct certificates the clients were served (rotation took effect)`,
        unit: "certificates",
        value: busy.serials.size,
      }));
      if (name === "server") {
        console.log(benchLine({
          id: "mem.server.peak",
          section: MEMORY,
          label: "example server peak after the rotation load (VmHWM)",
          unit: "MB",
          value: readRss(child.pid).hwmMB,
        }));
      }
    } finally {
      for (const child of children) await stopChild(child);
      await Deno.remove(dir, { recursive: true });
    }
  }
}

if (import.meta.main) await main();
