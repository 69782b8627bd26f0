/**
 * `deno task demo`: the whole flow on one machine, with no cluster and no Go.
 *
 * A development CA, plainly a stand-in for SPIRE, issues short-lived SVIDs for a server and a
 * client and writes them as spiffe-helper does (`svid.pem`, `svid_key.pem`, `svid_bundle.pem`,
 * truncated and rewritten in place, renewed at half-life). The trust-store engine renders a Debian
 * trust store from the CA bundle into a local directory, swapped atomically. The example server
 * serves its SVID (reloaded live); the example client trusts ONLY the rendered store
 * (`--system-certs=true`) and prints the server's certificate per request, on a new connection
 * each time. Part-way through, the CA rotates: the new CA joins the bundle and the store first,
 * then leaves are issued by it, and the client carries on without errors.
 *
 * `--spire` runs the same flow on real SPIRE + spiffe-helper built by `./scripts/deno task tools`.
 * Ctrl-C stops everything and removes the temporary directory.
 *
 * @module
 */

import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { AtomicWriter, buildTrustSet, renderTrustStore } from "../trust_store/mod.ts";
import { SvidWatcher } from "../spire/mod.ts";
import { DEV_CA_LABEL, DevCa, writeSvidFiles } from "../x509/mod.ts";
import { type ClientStats, runClient } from "./tls_client.ts";
import { type RunningServer, startServer } from "./tls_server.ts";
import { type FlagTable, parseFlagTable, renderFlags } from "../cli/mod.ts";

/** Options of a demo run. */
export interface DemoOptions {
  /** Stop after this long (0 = until Ctrl-C). */
  durationMs: number;
  /** SVID lifetime (dev CA mode). */
  ttlMs: number;
  /** Client request interval. */
  intervalMs: number;
  /** When the CA rotation starts, from the start (dev CA mode). */
  caRotationAtMs: number;
  /** Use real SPIRE + spiffe-helper. */
  spire: boolean;
  /** Where demo lines go. */
  print: (line: string) => void;
}

/** What a run saw. */
export interface DemoResult {
  /** Client counters. */
  client: ClientStats;
  /** Server SVIDs written (dev CA) or seen (SPIRE). */
  serverRotations: number;
  /** Whether a CA rotation reached the trust store. */
  caRotated: boolean;
  /** The temporary directory used (removed by now). */
  dir: string;
}

const SERVER_ID = "spiffe://example.org/workload/server";
const CLIENT_ID = "spiffe://example.org/workload/client";

/** Renders the Debian layout from a PEM bundle into `writer`'s directory. */
async function renderStore(writer: AtomicWriter, bundlePem: string): Promise<number> {
  const set = await buildTrustSet([{ name: "SVID bundle", text: bundlePem }], {
    base: { kind: "none" },
  });
  await writer.write(renderTrustStore("debian", set));
  return set.certificates.length;
}

/** Waits `ms`, or less when `signal` aborts first; never rejects. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => {});
}

/** Runs the demo with the dev CA until `signal` aborts. */
async function devCaFlow(
  dir: string,
  options: DemoOptions,
  signal: AbortSignal,
  started: (server: RunningServer, storeFile: string) => Promise<void>,
): Promise<{ serverRotations: number; caRotated: boolean }> {
  const say = (line: string) => options.print(`[${DEV_CA_LABEL}] ${line}`);
  const serverDir = join(dir, "server"), clientDir = join(dir, "client");
  const storeDir = join(dir, "etc-ssl-certs");
  await Deno.mkdir(storeDir, { recursive: true });
  const writer = new AtomicWriter(storeDir);
  let cas = [await DevCa.create(1)];
  let issuing = cas[0];
  const bundle = () => cas.map((ca) => ca.certPem).join("");
  say(`created CA 1 (${issuing.subject})`);

  let serverRotations = 0;
  const issueAll = async (gapMs: number) => {
    const server = await issuing.issue({
      spiffeId: SERVER_ID,
      dnsNames: ["server-service"],
      ipAddresses: ["127.0.0.1"],
      ttlMs: options.ttlMs,
    });
    const client = await issuing.issue({ spiffeId: CLIENT_ID, ttlMs: options.ttlMs * 6 });
    await writeSvidFiles(serverDir, { ...server, bundlePem: bundle() }, { gapMs });
    await writeSvidFiles(clientDir, { ...client, bundlePem: bundle() }, { gapMs });
    serverRotations++;
    say(
      `issued server SVID from CA ${cas.indexOf(issuing) + 1}, Not After ${
        server.notAfter.toISOString().replace(/\.\d{3}Z$/, "Z")
      }`,
    );
  };
  await issueAll(0);
  const count = await renderStore(writer, bundle());
  say(`trust store rendered (debian layout, ${count} CA) at ${storeDir}`);

  const server = await startServer({
    certDir: serverDir,
    port: 0,
    hostname: "127.0.0.1",
    logRotations: false,
  });
  await started(server, join(storeDir, "ca-certificates.crt"));

  let caRotated = false;
  const begin = Date.now();
  // Renew at half-life, like the SPIRE agent; torn writes are widened on purpose (20 ms gaps).
  while (!signal.aborted) {
    await sleep(options.ttlMs / 2, signal);
    if (signal.aborted) break;
    if (!caRotated && Date.now() - begin >= options.caRotationAtMs) {
      const next = await DevCa.create(cas.length + 1);
      cas = [...cas, next];
      say(`CA rotation: CA ${cas.length} (${next.subject}) joins the bundle`);
      const count = await renderStore(writer, bundle());
      say(`CA rotation reached the trust store: ${count} CAs in ${storeDir}/ca-certificates.crt`);
      await issueAll(20); // same leaf issuer, new bundle: spiffe-helper rewrites all three files
      await sleep(Math.min(2_000, options.ttlMs / 4), signal);
      issuing = next;
      say(`now issuing leaves from CA ${cas.length}`);
      caRotated = true;
    }
    await issueAll(20);
  }
  return { serverRotations, caRotated };
}

/** Runs the demo on real SPIRE + spiffe-helper until `signal` aborts. */
async function spireFlow(
  dir: string,
  options: DemoOptions,
  signal: AbortSignal,
  started: (server: RunningServer, storeFile: string) => Promise<void>,
): Promise<{ serverRotations: number; caRotated: boolean }> {
  const harness = await import("../tests/harness/mod.ts");
  const say = (line: string) => options.print(`[SPIRE] ${line}`);
  const storeDir = join(dir, "etc-ssl-certs");
  await Deno.mkdir(storeDir, { recursive: true });
  const writer = new AtomicWriter(storeDir);
  say("starting spire-server and spire-agent");
  const spire = await harness.startSpire({ trustDomain: "example.org" });
  const helpers: { stop(): Promise<void> }[] = [];
  let watcher: SvidWatcher | undefined;
  let server: RunningServer | undefined;
  try {
    const selectors = [`unix:uid:${Deno.uid()}`];
    await spire.createEntry({
      spiffeId: SERVER_ID,
      selectors,
      dnsNames: ["server-service"],
      x509SvidTtlSeconds: Math.max(10, Math.round(options.ttlMs / 1000)),
      hint: "server",
    });
    await spire.createEntry({
      spiffeId: CLIENT_ID,
      selectors,
      x509SvidTtlSeconds: 60,
      hint: "client",
    });
    for (const hint of ["server", "client"]) {
      const helper = await harness.runSpiffeHelper({
        agentSocketPath: spire.agentSocketPath,
        certDir: join(dir, hint),
        hint,
        workDir: await Deno.makeTempDir({ dir, prefix: `helper-${hint}-` }),
      });
      helpers.push(helper);
      await helper.waitForFiles();
    }
    say("spiffe-helper wrote the server and client SVIDs");
    watcher = new SvidWatcher(join(dir, "server"));
    const first = await watcher.ready(30_000);
    let lastBundle = first.bundlePem;
    let serverRotations = 1;
    const count = await renderStore(writer, first.bundlePem);
    say(`trust store rendered from SPIRE's bundle (${count} CA) at ${storeDir}`);
    let caRotated = false;
    watcher.onUpdate((set) => {
      serverRotations++;
      say(`spiffe-helper rotated the server SVID, Not After ${set.notAfter.toISOString()}`);
      if (set.bundlePem !== lastBundle) {
        lastBundle = set.bundlePem;
        renderStore(writer, set.bundlePem).then((n) => {
          caRotated = true;
          say(`CA rotation reached the trust store: ${n} CAs`);
        }).catch((error) => say(`trust store not updated: ${(error as Error).message}`));
      }
    });
    server = await startServer({
      certDir: join(dir, "server"),
      port: 0,
      hostname: "127.0.0.1",
      logRotations: false,
    });
    await started(server, join(storeDir, "ca-certificates.crt"));
    const begin = Date.now();
    const cli = (args: string[]) =>
      harness.runCommand([
        harness.toolPath("spire-server"),
        ...args,
        "-socketPath",
        spire.serverSocketPath,
      ]);
    let phase: "waiting" | "prepared" | "activated" = "waiting";
    let authorityId = "";
    let preparedAt = 0;
    while (!signal.aborted) {
      await sleep(1_000, signal);
      if (phase === "waiting" && Date.now() - begin >= options.caRotationAtMs) {
        // SPIRE's own CA rotation: prepare a new X.509 authority (it joins the bundle at once) ...
        const result = await cli(["localauthority", "x509", "prepare", "-output", "json"]);
        authorityId = /"authority_id"\s*:\s*"([0-9a-f]+)"/.exec(result.stdout)?.[1] ?? "";
        phase = "prepared";
        preparedAt = Date.now();
        say(
          result.code === 0 && authorityId
            ? `CA rotation: spire-server prepared X.509 authority ${authorityId} (joins the bundle)`
            : `could not prepare a new authority: ${(result.stderr || result.stdout).trim()}`,
        );
      } else if (
        phase === "prepared" && authorityId && caRotated &&
        Date.now() - preparedAt >= options.ttlMs
      ) {
        // ... and once the bundle carrying it has reached the store, activate it.
        const result = await cli([
          "localauthority",
          "x509",
          "activate",
          "-authorityID",
          authorityId,
        ]);
        phase = "activated";
        say(
          result.code === 0
            ? `spire-server activated authority ${authorityId}: new SVIDs come from the new CA`
            : `could not activate the authority: ${(result.stderr || result.stdout).trim()}`,
        );
      }
    }
    return { serverRotations, caRotated };
  } finally {
    watcher?.close();
    await server?.close();
    for (const helper of helpers) await helper.stop();
    await spire.stop();
  }
}

/**
 * Runs the demo until the duration passes or `signal` aborts, then removes everything.
 *
 * @param options timings, mode and output
 * @param signal aborts the run (Ctrl-C)
 */
export async function runDemo(options: DemoOptions, signal: AbortSignal): Promise<DemoResult> {
  const dir = await Deno.makeTempDir({ prefix: "spire-cacerts-demo-" });
  options.print(`[demo] working directory ${dir} (removed on exit)`);
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  const timer = options.durationMs > 0 ? setTimeout(onAbort, options.durationMs) : undefined;
  let clientRun: Promise<ClientStats> | undefined;
  let server: RunningServer | undefined;
  const started = (running: RunningServer, storeFile: string) => {
    server = running;
    options.print(
      `[demo] server listening on https://127.0.0.1:${running.port}; client trusts only ${storeFile}`,
    );
    clientRun = runClient({
      url: new URL(`https://127.0.0.1:${running.port}/`),
      serverName: "server-service",
      trustFile: storeFile,
      certDir: join(dir, "client"),
      intervalMs: options.intervalMs,
      count: 0,
      print: options.print,
      signal: stop.signal,
    });
    return Promise.resolve();
  };
  try {
    const flow = options.spire ? spireFlow : devCaFlow;
    const { serverRotations, caRotated } = await flow(dir, options, stop.signal, started);
    stop.abort();
    const client = (await clientRun) ?? { ok: 0, failed: 0, notAfters: [] };
    return { client, serverRotations, caRotated, dir };
  } finally {
    stop.abort();
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    await clientRun?.catch(() => undefined);
    await (server as RunningServer | undefined)?.close();
    await Deno.remove(dir, { recursive: true }).catch(() => undefined);
  }
}

const DURATION = { type: "duration", arg: "D", bareSeconds: true, allowZero: true } as const;

/** The command line: name, kind, default, check and help line of every flag. */
export const DEMO_FLAGS = {
  duration: {
    ...DURATION,
    default: "0",
    help: "stop after D (e.g. 30s); default: run until Ctrl-C",
  },
  ttl: {
    ...DURATION,
    default: "10s",
    help: "SVID lifetime, renewed at half-life (default {default})",
  },
  interval: { ...DURATION, default: "1s", help: "client request interval (default {default})" },
  "ca-rotation-at": {
    ...DURATION,
    default: "12s",
    help: "start the CA rotation after D (default {default})",
  },
  spire: {
    type: "boolean",
    help: "use real SPIRE + spiffe-helper (built by ./scripts/deno task tools)",
  },
  help: { type: "boolean", help: "" },
} as const satisfies FlagTable;

const HELP =
  `usage: deno task demo [--duration 0] [--ttl 10s] [--interval 1s] [--ca-rotation-at 25s]
                      [--spire]

Runs the SPIFFE example server and client on this machine. A ${DEV_CA_LABEL} issues
short-lived SVIDs as spiffe-helper writes them; the trust-store engine renders a Debian trust
store from the CA bundle; the client trusts only that store and prints the server certificate
for every request; the CA rotates part-way through. Ctrl-C stops and removes everything.

${renderFlags(DEMO_FLAGS, 20)}`;

/**
 * Command-line entry point.
 *
 * @param args command-line arguments
 * @returns exit code: 0, or 1 when a request failed or nothing rotated
 */
export async function main(args: string[]): Promise<number> {
  let options: DemoOptions;
  try {
    const values = parseFlagTable(DEMO_FLAGS, args);
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    options = {
      durationMs: values.duration,
      ttlMs: values.ttl,
      intervalMs: values.interval,
      caRotationAtMs: values["ca-rotation-at"],
      spire: values.spire,
      print: (line) => console.log(line),
    };
    if (options.ttlMs < 2_000) throw new RangeError("--ttl must be at least 2s");
  } catch (error) {
    console.error(`demo: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (options.spire) {
    const { hasTool, BUILD_COMMAND } = await import("../tests/harness/mod.ts");
    const missing = (["spire-server", "spire-agent", "spiffe-helper"] as const).filter((t) =>
      !hasTool(t)
    );
    if (missing.length) {
      console.error(
        `demo --spire needs ${missing.join(", ")}: build them with \`${BUILD_COMMAND}\``,
      );
      return 2;
    }
  }
  const controller = new AbortController();
  // A terminal's Ctrl-C reaches the whole foreground group, and `deno task` forwards what it
  // gets as well, so one key press can arrive twice within milliseconds: only a second press
  // at least a second later forces the exit (which leaves the directory behind).
  let stoppingSince: number | undefined;
  const interrupt = () => {
    if (stoppingSince === undefined) {
      stoppingSince = Date.now();
      console.log("[demo] stopping (Ctrl-C again to force)");
      controller.abort();
    } else if (Date.now() - stoppingSince >= 1_000) Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupt);
  Deno.addSignalListener("SIGTERM", interrupt);
  let result: DemoResult;
  try {
    result = await runDemo(options, controller.signal);
  } catch (error) {
    console.error(`demo failed: ${(error as Error).message}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", interrupt);
    Deno.removeSignalListener("SIGTERM", interrupt);
  }
  const { client } = result;
  console.log(
    `[demo] done: ${client.ok} requests ok, ${client.failed} failed, ` +
      `${client.notAfters.length} distinct server Not After values, ` +
      `${result.serverRotations} server SVIDs, CA rotation ${
        result.caRotated ? "reached the trust store" : "not reached"
      }; removed ${result.dir}`,
  );
  return client.failed > 0 ? 1 : 0;
}

if (import.meta.main) main(Deno.args).then((code) => Deno.exit(code));
