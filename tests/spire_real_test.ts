/**
 * The example server and client against real SPIRE + spiffe-helper with 10-second SVIDs: both
 * `--system-certs` modes run side by side for two minutes (SPIRE_REAL_TEST_SECONDS overrides) at
 * 10 requests per second each, a new connection per request, through every server rotation and
 * a rotation of SPIRE's CA (a new X.509 authority prepared at 30 %, activated at 60 %).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { AtomicWriter, buildTrustSet, renderTrustStore } from "../trust_store/mod.ts";
import { SvidWatcher } from "../spire/mod.ts";
import { type ClientStats, runClient } from "../workloads/client.ts";
import { startServer } from "../workloads/server.ts";
import { needsTools, runCommand, runSpiffeHelper, startSpire, toolPath } from "./harness/mod.ts";
import { setTimeout as delay } from "node:timers/promises";

const SECONDS = Number(Deno.env.get("SPIRE_REAL_TEST_SECONDS") ?? "120");
/** Go's `log.LstdFlags` prefix the client puts on each of its lines. */
const GO_LOG = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /;

/** Waits `ms`, or less when `signal` aborts first; never rejects. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => {});
}

Deno.test({
  name: "real SPIRE 10 s SVIDs: client in both --system-certs modes, zero failed requests",
  ...needsTools(["spire-server", "spire-agent", "spiffe-helper"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const spire = await startSpire({ trustDomain: "example.org" });
    const root = await Deno.makeTempDir({ prefix: "spire-real-test-" });
    const helpers: { stop(): Promise<void> }[] = [];
    let watcher: SvidWatcher | undefined;
    let server: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      const selectors = [`unix:uid:${Deno.uid()}`];
      await spire.createEntry({
        spiffeId: "/workload/server",
        selectors,
        dnsNames: ["server-service"],
        x509SvidTtlSeconds: 10,
        hint: "server",
      });
      await spire.createEntry({
        spiffeId: "/workload/client",
        selectors,
        x509SvidTtlSeconds: 60,
        hint: "client",
      });
      for (const hint of ["server", "client"]) {
        const helper = await runSpiffeHelper({
          agentSocketPath: spire.agentSocketPath,
          certDir: join(root, hint),
          hint,
        });
        helpers.push(helper);
        await helper.waitForFiles();
      }
      // The OS store the CSI volume would hold, rendered by the engine from SPIRE's bundle.
      const storeDir = join(root, "etc-ssl-certs");
      await Deno.mkdir(storeDir);
      const writer = new AtomicWriter(storeDir);
      watcher = new SvidWatcher(join(root, "server"));
      const first = await watcher.ready(30_000);
      const render = async (pem: string) =>
        await writer.write(
          renderTrustStore(
            "debian",
            await buildTrustSet([{ name: "svid_bundle.pem", text: pem }], {
              base: { kind: "none" },
            }),
          ),
        );
      await render(first.bundlePem);
      let rotations = 0;
      watcher.onUpdate((set) => {
        rotations++;
        void render(set.bundlePem);
      });

      server = await startServer({
        certDir: join(root, "server"),
        port: 0,
        hostname: "127.0.0.1",
        logRotations: false,
        requireClient: { id: "spiffe://example.org/workload/client" },
      });
      const url = new URL(`https://127.0.0.1:${server.port}/`);
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), SECONDS * 1000);
      const lines: Record<string, string[]> = { bundle: [], system: [] };
      const run = (mode: "bundle" | "system") =>
        runClient({
          url,
          serverName: "server-service",
          trustFile: mode === "system"
            ? join(storeDir, "ca-certificates.crt")
            : join(root, "client", "svid_bundle.pem"),
          certDir: join(root, "client"),
          systemCerts: mode === "system",
          intervalMs: 100,
          count: 0,
          print: (line) => lines[mode].push(line),
          signal: controller.signal,
        });
      // SPIRE's own CA rotation part-way: prepare (joins the bundle), later activate.
      const cli = (args: string[]) =>
        runCommand([toolPath("spire-server"), ...args, "-socketPath", spire.serverSocketPath], {
          check: true,
        });
      const caRotation = (async () => {
        await sleep(SECONDS * 300, controller.signal);
        if (controller.signal.aborted) return "";
        const prepared = await cli(["localauthority", "x509", "prepare", "-output", "json"]);
        const id = /"authority_id"\s*:\s*"([0-9a-f]+)"/.exec(prepared.stdout)?.[1];
        assert.ok(id, prepared.stdout);
        await sleep(SECONDS * 300, controller.signal);
        if (controller.signal.aborted) return "";
        await cli(["localauthority", "x509", "activate", "-authorityID", id]);
        return id;
      })();
      let results: ClientStats[];
      try {
        results = await Promise.all([run("bundle"), run("system")]);
      } finally {
        clearTimeout(timer);
      }
      assert.ok(await caRotation, "the CA rotation ran");
      const last = watcher.current()!;
      assert.equal(last.bundle.length, 2, "the new authority is in the bundle");
      assert.equal(
        last.leaf.verify(first.bundle[0].publicKey),
        false,
        "leaves now come from the new authority",
      );
      const store = await Deno.readTextFile(join(storeDir, "ca-certificates.crt"));
      assert.equal(store.match(/BEGIN CERTIFICATE/g)?.length, 2, "both CAs reached the store");
      for (const [mode, stats] of [["false", results[0]], ["true", results[1]]] as const) {
        const logged = lines[mode === "true" ? "system" : "bundle"];
        for (const line of logged) assert.match(line, GO_LOG);
        const messages = logged.map((line) => line.replace(GO_LOG, ""));
        assert.equal(
          messages[0],
          mode === "true" ? "Using system certificate trust store" : "Using SPIRE trust store",
        );
        assert.equal(messages[1], "Making request #1");
        const failures = messages.filter((m) => m.startsWith("Request to"));
        console.log(
          `--system-certs=${mode}: ${stats.ok} ok, ${stats.failed} failed, ` +
            `${stats.notAfters.length} distinct Not After; ${rotations} server rotations`,
        );
        assert.deepEqual(failures.slice(0, 5), [], `--system-certs=${mode} failures`);
        assert.equal(stats.failed, 0);
        assert.ok(stats.ok >= SECONDS * 10 * 0.7, `--system-certs=${mode}: only ${stats.ok} ok`);
        assert.ok(
          stats.notAfters.length >= Math.min(10, SECONDS / 12),
          `--system-certs=${mode}: ${stats.notAfters.length} distinct Not After`,
        );
        const times = stats.notAfters.map(Date.parse);
        for (let i = 1; i < times.length; i++) {
          assert.ok(times[i] > times[i - 1], "Not After advances");
        }
      }
      assert.ok(rotations >= Math.min(10, SECONDS / 12), `${rotations} rotations`);
      // Each report line is logged on its own, right after "Making request #1".
      const sample = lines.system.slice(2, 7).map((line) => line.replace(GO_LOG, ""));
      assert.equal(sample[0], "Certificate Information:");
      assert.equal(sample[1], "  Subject: CN=server-service, O=SPIRE, C=US");
      assert.match(sample[2], /^ {2}Not Before: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.match(sample[3], /^ {2}Not After: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.match(sample[4], /^ {2}Time until expiration: \d+s$/);
    } finally {
      watcher?.close();
      await server?.close();
      for (const helper of helpers) await helper.stop();
      await spire.stop();
      await Deno.remove(root, { recursive: true });
    }
  },
});
