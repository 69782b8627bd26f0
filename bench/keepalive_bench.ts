/**
 * Requests after an idle gap, the way the API server sends them: `admission-client`
 * (tests/tools/admission-client, Go `net/http` with kube-apiserver's webhook transport: idle
 * connections reused for up to 90 s, a POST that meets a just-closed connection not retried)
 * against `webhook/main.ts --controller=false` started as a child process.
 *
 * ```sh
 * ./scripts/deno run -A bench/keepalive_bench.ts                        # 1, 6, 30, 89 s; ~95 s
 * ./scripts/deno run -A bench/keepalive_bench.ts --gaps=1,6 --window=12 # quick
 * ```
 *
 * Every gap runs at once, each as `--parallel` (default 4) clients with a connection of their
 * own, so the whole benchmark takes one window (default 90 s, just over the longest gap, 89 s:
 * the last second before Go's 90 s idle limit) rather than the sum of the gaps. Each client
 * makes `floor(window / gap)` calls after its first one, sleeping the gap before each.
 *
 * Figures per gap: failed requests (target 0: under `failurePolicy: Fail` each is a rejected
 * pod) and the share of requests that went out on the reused, idle connection. The same-run
 * baseline is a bare `node:https` server with node's default keep-alive timeout (5 s) driven by
 * the same client over the same gaps. Against it, a request 6 s after the last one races the
 * server's close: in the first full run (2026-12-01) 23 of 60 went out on the dying connection and
 * failed with "connection reset by peer", the rest redialled; after 30 s and 89 s the client had
 * seen the close and redialled every time (0 failed, 0 reused). The webhook (120 s) reused its
 * connection for every request and failed none.
 *
 * Prints `BENCH {json}` lines (bench/report.ts).
 *
 * @module
 */

import { createServer } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { INJECT_LABEL } from "../api/mod.ts";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import {
  createCa,
  freePorts,
  startProcess,
  startWebhookProcess,
  waitFor,
  waitForWebhook,
  writeLocalhostSvid,
} from "../tests/harness/mod.ts";
import {
  type AdmissionClientResult,
  runAdmissionClient,
} from "../tests/harness/admission_client.ts";
import { benchLine } from "./report.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SECTION = "webhook keep-alive: Go net/http client (kube-apiserver's transport) after idle";

/** The command-line input of one benchmark run. */
interface Options {
  /** Idle gaps in seconds. */
  gaps: number[];
  /** Clients (connections) per gap and server. */
  parallel: number;
  /** Seconds each gap's clients keep calling. */
  window: number;
}

/** A bad command-line value. */
class KeepaliveBenchUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeepaliveBenchUsageError";
  }
}

function parseOptions(args: string[]): Options & { serveBaseline?: number; certDir?: string } {
  const { values } = parseArgs({
    args,
    options: {
      gaps: { type: "string", default: "1,6,30,89" },
      parallel: { type: "string", default: "4" },
      window: { type: "string", default: "90" },
      "serve-baseline": { type: "string" },
      "cert-dir": { type: "string" },
    },
  });
  const gaps = values.gaps.split(",").map((s) => Number(s.trim()));
  if (gaps.some((g) => !(g > 0))) {
    throw new KeepaliveBenchUsageError(`--gaps: positive seconds, got ${values.gaps}`);
  }
  const parallel = Number(values.parallel);
  if (!Number.isInteger(parallel) || parallel < 1) {
    throw new KeepaliveBenchUsageError(`--parallel: a positive integer, got ${values.parallel}`);
  }
  const window = Number(values.window);
  if (!(window >= Math.max(...gaps))) {
    throw new KeepaliveBenchUsageError(`--window: at least the longest gap, got ${values.window}`);
  }
  return {
    gaps,
    parallel,
    window,
    serveBaseline: values["serve-baseline"] ? Number(values["serve-baseline"]) : undefined,
    certDir: values["cert-dir"],
  };
}

/**
 * The baseline server (run as a child process): node:https with its default keep-alive timeout,
 * answering every POST with an allowed AdmissionReview response for the request's uid.
 */
function serveBaseline(certDir: string, port: number): void {
  const server = createServer({
    cert: Deno.readTextFileSync(join(certDir, "svid.pem")),
    key: Deno.readTextFileSync(join(certDir, "svid_key.pem")),
  }, (req: IncomingMessage, res: ServerResponse) => {
    const decoder = new TextDecoder();
    let text = "";
    req.on("data", (chunk: Uint8Array) => text += decoder.decode(chunk, { stream: true }));
    req.on("end", () => {
      let uid = "";
      try {
        uid = String((JSON.parse(text) as { request?: { uid?: string } }).request?.uid ?? "");
      } catch { /* answered with an empty uid */ }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: { uid, allowed: true },
      }));
    });
  });
  server.listen(port, "127.0.0.1", () => console.log(`listening ${server.keepAliveTimeout}`));
}

/** Failed and reused counts over the calls made after an idle gap. */
interface GapOutcome {
  requests: number;
  failed: number;
  reused: number;
  errors: string[];
}

function afterIdle(result: AdmissionClientResult): GapOutcome {
  const later = result.calls.filter((c) => c.index > 0);
  const failedCalls = later.filter((c) => c.status !== 200 || c.error !== undefined);
  return {
    requests: later.length,
    failed: failedCalls.length,
    reused: later.filter((c) => c.reused).length,
    errors: failedCalls.map((c) =>
      `call ${c.index} of client ${c.client}${c.reused ? " (reused connection)" : ""}: ${
        c.error ?? `status ${c.status}`
      }`
    ),
  };
}

async function main(options: Options): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "keepalive-bench-" });
  const certDir = join(dir, "certs");
  await Deno.mkdir(certDir);
  const ca = await createCa(dir, "ca", "bench-spire-ca");
  await writeLocalhostSvid(ca, dir, certDir);
  const bodyFile = join(dir, "review.json");
  await Deno.writeTextFile(
    bodyFile,
    JSON.stringify(podCreateReview({
      metadata: { name: "keepalive", labels: { [INJECT_LABEL]: "true" } },
      spec: { containers: [{ name: "app", image: "example/app:1" }] },
    }, { uid: "keepalive" })),
  );
  const [baselinePort] = freePorts(1);
  const started = startWebhookProcess({
    logPath: join(dir, "webhook.log"),
    args: ["--controller=false", `--cert-dir=${certDir}`, "--log-level=warn"],
  });
  const { process: webhook, port: webhookPort } = started;
  const baseline = startProcess({
    name: "baseline",
    program: Deno.execPath(),
    args: [
      "run",
      "-A",
      fileURLToPath(import.meta.url),
      `--serve-baseline=${baselinePort}`,
      `--cert-dir=${certDir}`,
    ],
    logPath: join(dir, "baseline.log"),
    cwd: ROOT,
  });
  try {
    await waitForWebhook(started);
    const baselineTimeout = await waitFor(
      "baseline listening",
      () => /listening (\d+)/.exec(Deno.readTextFileSync(baseline.logPath))?.[1],
      { abort: () => baseline.assertRunning(), detail: () => baseline.logTail() },
    );
    const baselineLabel = `bare node:https, default keep-alive (${
      Number(baselineTimeout) / 1000
    } s)`;
    const run = (port: number, gap: number) =>
      runAdmissionClient({
        url: `https://127.0.0.1:${port}/mutate`,
        caFile: ca.certPath,
        serverName: "localhost",
        bodyFile,
        gapsMs: Array(Math.floor(options.window / gap)).fill(gap * 1000),
        parallel: options.parallel,
      });
    console.error(
      `keepalive: gaps ${options.gaps.join(", ")} s, ${options.parallel} connections each, ` +
        `${options.window} s window; webhook and baseline at once`,
    );
    const results = await Promise.all(
      options.gaps.map(async (gap) => {
        const [value, base] = await Promise.all([run(webhookPort, gap), run(baselinePort, gap)]);
        return { gap, value, base };
      }),
    );
    webhook.assertRunning();
    for (const { gap, value, base } of results) {
      const firstFailed = value.calls.filter((c) => c.index === 0 && c.status !== 200);
      if (firstFailed.length) {
        throw new Error(`first calls to the webhook failed: ${JSON.stringify(firstFailed)}`);
      }
      const v = afterIdle(value);
      const b = afterIdle(base);
      console.error(
        `keepalive: ${gap} s idle: webhook ${v.failed}/${v.requests} failed, ${v.reused} reused` +
          `${v.errors.length ? ` (${v.errors.join("; ")})` : ""}; baseline ${b.failed}/` +
          `${b.requests} failed, ${b.reused} reused${
            b.errors.length ? ` (${b.errors.join("; ")})` : ""
          }`,
      );
      console.log(benchLine({
        id: `webhook.keepalive.failed@${gap}s`,
        section: SECTION,
        label: `failed requests after ${gap} s idle (of ${v.requests})`,
        unit: "requests",
        value: v.failed,
        baseline: b.failed,
        baselineLabel,
        target: { max: 0, text: `0 failed requests after ${gap} s idle` },
      }));
      console.log(benchLine({
        id: `webhook.keepalive.reused@${gap}s`,
        section: SECTION,
        label: `requests after ${gap} s idle sent on the reused connection`,
        unit: "%",
        value: (100 * v.reused) / v.requests,
        baseline: (100 * b.reused) / b.requests,
        baselineLabel,
      }));
    }
  } finally {
    await Promise.all([webhook.stop(), baseline.stop()]);
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  let options: ReturnType<typeof parseOptions>;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`keepalive_bench: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (options.serveBaseline !== undefined) {
    serveBaseline(options.certDir ?? ".", options.serveBaseline);
  } else await main(options);
}
