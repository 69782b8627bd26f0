/**
 * The webhook program drains on SIGTERM instead of dropping what it is doing (under
 * `failurePolicy: Fail` a dropped admission is a rejected pod): `/readyz` turns 503 while HTTPS
 * still answers, idle keep-alive connections are closed cleanly, new connections are refused
 * after `--shutdown-delay`, requests in flight at SIGTERM and at the end of the delay still get
 * their 200, and the process exits 0; a request that never finishes is cut at
 * `--shutdown-timeout` and the process still exits 0.
 *
 * The app refuses a body that takes longer than its body timeout (2 s, 408), so a slow request
 * here stays under it: the delay is 1.2 s, and the cut test's timeout (0.5 s) ends before the
 * body timeout could answer the stuck request.
 */

import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { connect, type TLSSocket } from "node:tls";
import { INJECT_LABEL } from "../api/mod.ts";
import { DEFAULT_BODY_TIMEOUT_MS } from "../webhook/app.ts";
import { parseFlags } from "../webhook/main.ts";
import { loadAllYaml } from "@kubernetes/client-node";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import {
  type CertificateFiles,
  createCa,
  type ManagedProcess,
  startWebhookProcess,
  waitFor,
  waitForWebhook,
  writeLocalhostSvid,
} from "./harness/mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;

const REVIEW = JSON.stringify(podCreateReview({
  metadata: { labels: { [INJECT_LABEL]: "true" } },
  spec: { containers: [{ name: "c", image: "i" }] },
}, { uid: "u" }));
const REVIEW_BYTES = new TextEncoder().encode(REVIEW).length;
const HEAD = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
  `Content-Length: ${REVIEW_BYTES}\r\n\r\n`;

/** A TLS connection and everything that happened on it. */
interface Connection {
  socket: TLSSocket;
  /** All bytes received, as text. */
  received: () => string;
  /** The server's FIN arrived. */
  ended: () => boolean;
  /** The first socket error (e.g. ECONNRESET), if any. */
  error: () => Error | undefined;
}

async function open(port: number, ca: string): Promise<Connection> {
  const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ca });
  let text = "";
  let ended = false;
  let error: Error | undefined;
  socket.on("data", (chunk: Uint8Array) => text += new TextDecoder().decode(chunk));
  socket.on("end", () => ended = true);
  socket.on("error", (e: Error) => error ??= e);
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  return { socket, received: () => text, ended: () => ended, error: () => error };
}

/** The first complete response after `from` characters of the connection's text. */
function response(c: Connection, from = 0) {
  const text = c.received().slice(from);
  const head = text.indexOf("\r\n\r\n");
  if (head < 0) return undefined;
  const lines = text.slice(0, head).split("\r\n");
  const headers = Object.fromEntries(
    lines.slice(1).map((l) => {
      const i = l.indexOf(":");
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
    }),
  );
  const body = text.slice(head + 4);
  const length = Number(headers["content-length"] ?? NaN);
  const complete = Number.isNaN(length) ? body.endsWith("0\r\n\r\n") : body.length >= length;
  return complete ? { status: lines[0], headers, body } : undefined;
}

function answered(c: Connection, what: string, process: ManagedProcess, from = 0) {
  return waitFor(what, () => response(c, from), {
    timeoutMs: 15_000,
    intervalMs: 20,
    detail: () => `received: ${c.received()}\n${process.logTail(20)}`,
  });
}

/** Whether anything accepts TCP connections on the port. */
function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

async function readyz(health: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`${health}/readyz`);
  return { status: r.status, text: await r.text() };
}

async function logLines(process: ManagedProcess): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(process.logPath);
  return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

async function startWebhook(extra: string[], withSvid = true) {
  const work = await Deno.makeTempDir({ prefix: "webhook-shutdown-" });
  const certDir = join(work, "certs");
  await Deno.mkdir(certDir);
  const ca: CertificateFiles = await createCa(work, "ca", "test-spire-ca");
  if (withSvid) await writeLocalhostSvid(ca, work, certDir);
  const webhook = startWebhookProcess({
    logPath: join(work, "webhook.log"),
    args: ["--controller=false", `--cert-dir=${certDir}`, ...extra],
  });
  // Without an SVID the health port answers 503 until one appears.
  await waitForWebhook(webhook, { status: withSvid ? 200 : 503 });
  const { process, port, health } = webhook;
  return { work, process, port, health, ca: ca.certPem };
}

function exited(process: ManagedProcess): Promise<number> {
  return waitFor("exit", () => process.exitCode ?? undefined, {
    timeoutMs: 30_000,
    intervalMs: 50,
    detail: () => process.logTail(20),
  });
}

Deno.test({
  name:
    "webhook shutdown: SIGTERM drains — not ready, still serving, then in-flight requests finish",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    assert.ok(DEFAULT_BODY_TIMEOUT_MS >= 2_000, "the slow requests below stay under it");
    const { work, process, port, health, ca } = await startWebhook([
      "--shutdown-delay=1.2s",
      "--shutdown-timeout=20s",
    ]);
    const sockets: TLSSocket[] = [];
    const half = Math.floor(REVIEW.length / 2);
    /** A connection whose request has been sent up to the middle of its body. */
    const halfSent = async () => {
      const c = await open(port, ca);
      sockets.push(c.socket);
      c.socket.write(HEAD + REVIEW.slice(0, half));
      return c;
    };
    /** A complete request on a new connection, answered. */
    const exchange = async () => {
      const c = await open(port, ca);
      sockets.push(c.socket);
      c.socket.write(HEAD + REVIEW);
      return { c, answer: await answered(c, "answer", process) };
    };
    try {
      // An idle keep-alive connection, and a request whose body is only half sent.
      const idle = await open(port, ca);
      sockets.push(idle.socket);
      idle.socket.write(HEAD + REVIEW);
      const first = await answered(idle, "keep-alive answer", process);
      assert.equal(first.status, "HTTP/1.1 200 OK");
      assert.equal(first.headers.connection, "keep-alive");
      const slow = await halfSent();
      // The server has read the slow request's headers once it answered a request sent after.
      await exchange();

      Deno.kill(process.pid, "SIGTERM");
      const notReady = await waitFor("readyz 503", async () => {
        const r = await readyz(health);
        return r.status === 503 && r;
      }, { timeoutMs: 5_000, intervalMs: 20 });
      assert.equal(notReady.text, "not ready: shutting down\n");
      assert.equal((await fetch(`${health}/healthz`)).status, 200, "still alive");

      // During the delay a new connection is still answered, and told to go elsewhere next time.
      const { c: during, answer: late } = await exchange();
      assert.equal(late.status, "HTTP/1.1 200 OK");
      assert.equal(late.headers.connection, "close");
      assert.equal(JSON.parse(late.body).response.allowed, true);
      await waitFor("closed after its answer", () => during.ended(), { timeoutMs: 5_000 });

      // The request in flight at SIGTERM finishes with 200 and closes its connection.
      slow.socket.write(REVIEW.slice(half));
      const done = await answered(slow, "slow request's answer", process);
      assert.equal(done.status, "HTTP/1.1 200 OK");
      assert.equal(done.headers.connection, "close");
      assert.equal(JSON.parse(done.body).response.uid, "u");
      assert.equal(slow.error(), undefined);

      // The idle connection was closed by the server cleanly (FIN), not reset.
      await waitFor("idle connection closed", () => idle.ended(), { timeoutMs: 5_000 });
      assert.equal(idle.error(), undefined);
      assert.equal(idle.received().split("HTTP/1.1 ").length - 1, 1, "one response, nothing more");

      // One more request still arriving when the delay ends: new connections are refused, and
      // this one is answered all the same.
      const straggler = await halfSent();
      await waitFor("connections refused", async () => !(await accepting(port)), {
        timeoutMs: 15_000,
        intervalMs: 20,
      });
      assert.equal(process.exitCode, null, "still draining");
      straggler.socket.write(REVIEW.slice(half));
      const last = await answered(straggler, "straggler's answer", process);
      assert.equal(last.status, "HTTP/1.1 200 OK");
      assert.equal(last.headers.connection, "close");

      assert.equal(await exited(process), 0);
      const lines = await logLines(process);
      assert.deepEqual(lines.filter((l) => l.level === "error"), []);
      const summary = lines.find((l) => l.msg === "shut down");
      assert.equal(summary?.cut, 0);
      assert.equal(summary?.served, 3, "the request during the delay, the slow one, the straggler");
    } finally {
      for (const socket of sockets) socket.destroy();
      await process.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "webhook shutdown: a request that never finishes is cut at --shutdown-timeout, exit 0",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { work, process, port, ca } = await startWebhook([
      "--shutdown-delay=0s",
      "--shutdown-timeout=500ms",
    ]);
    let stuck: Connection | undefined;
    try {
      stuck = await open(port, ca);
      stuck.socket.write(HEAD + REVIEW.slice(0, 10));
      const probe = await open(port, ca);
      probe.socket.write(HEAD + REVIEW);
      await answered(probe, "probe", process);
      probe.socket.destroy();

      Deno.kill(process.pid, "SIGTERM");
      assert.equal(await exited(process), 0);
      const lines = await logLines(process);
      const cut = lines.find((l) => l.msg === "shutdown timeout: closing connections still in use");
      assert.equal(cut?.level, "warn");
      assert.equal(cut?.cut, 1);
      await waitFor("stuck connection closed", () => stuck!.socket.destroyed || stuck!.ended(), {
        timeoutMs: 5_000,
      });
    } finally {
      stuck?.socket.destroy();
      await process.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test("webhook shutdown: the Deployment's grace period outlasts the drain it configures", async () => {
  const text = await Deno.readTextFile(join(ROOT, "manifests/webhook/deployment.yaml"));
  const [deployment] = loadAllYaml(text) as {
    spec: {
      template: {
        spec: {
          terminationGracePeriodSeconds?: number;
          containers: { name: string; args?: string[] }[];
        };
      };
    };
  }[];
  const pod = deployment.spec.template.spec;
  const webhook = pod.containers.find((c) => c.name === "webhook")!;
  const flags = parseFlags(webhook.args ?? []);
  // Kubernetes' default grace period is 30 s; what the manifest sets must cover the drain plus
  // at least 5 s for the controllers to stop and the process to exit.
  const graceMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
  assert.ok(
    graceMs >= flags.shutdownDelayMs + flags.shutdownTimeoutMs + 5_000,
    `terminationGracePeriodSeconds ${graceMs / 1000} s < delay ${flags.shutdownDelayMs} ms + ` +
      `timeout ${flags.shutdownTimeoutMs} ms + 5 s`,
  );
});

Deno.test({
  name: "webhook shutdown: a webhook that never served exits 0 without waiting out the delay",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // No SVID, so no endpoint ever pointed here: the 10-minute delay is not waited for.
    const { work, process } = await startWebhook(["--shutdown-delay=10m"], false);
    try {
      Deno.kill(process.pid, "SIGTERM");
      assert.equal(await exited(process), 0);
      const lines = await logLines(process);
      assert.equal(
        lines.find((l) => l.msg === "shutting down: not ready, still serving")?.delayMs,
        0,
      );
    } finally {
      await process.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});
