/**
 * Fault: the CSI driver is SIGKILLed at random moments while a Secret changes continuously, and
 * restarted with the same state directory each time. Readers poll every published tmpfs volume
 * throughout: every view (all files under one `..data` resolution) and every read through the
 * top-level link must be wholly one generation, never partial, empty or older than a view seen
 * before. After the last restart every volume converges to the latest good Secret content (a
 * garbage update written last is refused and the last good store stays), and crash debris is
 * gone. Set FAULT_SEED to replay a schedule.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type DriverProcess, startDriverProcess } from "../harness/driver_process.ts";
import { needsTools, waitFor } from "../harness/mod.ts";
import {
  apply,
  caProviderClass,
  coreApi,
  CsiClient,
  makeGenerations,
  publishRequest,
  putSecret,
  type ReaderReport,
  readView,
  setupCluster,
  sleep,
  startScratchApiServer,
  StoreReader,
} from "./helpers.ts";

/** mulberry32: a small seeded generator so a failing schedule can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KILLS = 4;
const VOLUMES = 3;
const GENERATIONS = 120;

Deno.test({
  name: "fault: SIGKILL the driver during Secret updates; stores stay whole and converge",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const seed = Number(Deno.env.get("FAULT_SEED") ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`FAULT_SEED=${seed}`);
    const rand = random(seed);
    const scratch = await startScratchApiServer("cacerts-fault-kill-");
    const { dir, kube } = scratch;
    let driver: DriverProcess | undefined;
    let client: CsiClient | undefined;
    const readers: StoreReader[] = [];
    try {
      await setupCluster(kube);
      const core = coreApi(kube.kubeConfig);
      const gens = await makeGenerations(GENERATIONS);
      await putSecret(core, "ca-bundle", { "ca.crt": gens[0].pem });
      await apply(kube, caProviderClass("spire-ca", { kind: "Secret", name: "ca-bundle" }));
      const stateDir = join(dir, "state");
      const start = async (n: number) => {
        driver = await startDriverProcess({
          dir,
          kubeconfigPath: kube.kubeconfigPath,
          stateDir,
          args: ["--base-roots=none", "--log-level=info"],
          logName: `driver-${n}.log`,
        });
        client = new CsiClient(driver.endpoint);
      };
      await start(0);
      const targets = Array.from(
        { length: VOLUMES },
        (_, i) => join(dir, "pods", `web-${i}`, "mount"),
      );
      for (const [i, target] of targets.entries()) {
        await client!.publish(publishRequest(`csi-vol-${i}`, target, `web-${i}`, "spire-ca"));
        assert.equal(readView(target, gens), 1);
      }
      for (const target of targets) readers.push(new StoreReader(target, gens));

      // Writer: a new generation every 60-250 ms, with a garbage update now and then.
      let lastGood = 1;
      let lastWriteAt = 0;
      let writing = true;
      let garbage = 0;
      const writer = (async () => {
        for (let g = 2; g <= GENERATIONS - 1 && writing; g++) {
          if (rand() < 0.1) {
            await putSecret(core, "ca-bundle", { "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB" });
            garbage++;
            await sleep(30);
          }
          await putSecret(core, "ca-bundle", { "ca.crt": gens[g - 1].pem });
          lastGood = g;
          lastWriteAt = performance.now();
          await sleep(60 + rand() * 190);
        }
      })();

      // Killer: half the kills land just after a write (inside the render / swap window).
      const kills: string[] = [];
      for (let k = 1; k <= KILLS; k++) {
        if (rand() < 0.5) {
          await sleep(200 + rand() * 1000);
        } else {
          const since = lastWriteAt;
          await waitFor("a fresh write", () => lastWriteAt > since, { timeoutMs: 10_000 });
          await sleep(rand() * 25);
        }
        kills.push(`kill ${k} after generation ${lastGood}`);
        Deno.kill(driver!.process.pid, "SIGKILL");
        await driver!.process.stop();
        client!.close();
        await start(k);
        // kubelet republishes periodically (requiresRepublish): it must succeed after a restart.
        await client!.publish(publishRequest("csi-vol-0", targets[0], "web-0", "spire-ca"));
      }
      writing = false;
      await writer;
      // The last update is garbage: it is refused and the last good generation stays.
      await putSecret(core, "ca-bundle", { "ca.crt": "not a certificate" });
      const want = lastGood;
      for (const target of targets) {
        await waitFor(`${target} holds generation ${want}`, () => {
          try {
            return readView(target, gens) === want;
          } catch {
            return false;
          }
        }, { timeoutMs: 30_000, intervalMs: 50, detail: () => driver!.process.logTail() });
      }
      await waitFor(
        "the garbage update is refused",
        async () => (await driver!.metric("cacerts_csi_update_failures_total")) >= 1,
        { timeoutMs: 15_000, detail: () => driver!.process.logTail() },
      );
      await sleep(500);
      const reports: ReaderReport[] = [];
      for (const r of readers.splice(0)) reports.push(await r.stop());
      for (const [i, report] of reports.entries()) {
        console.log(
          `volume ${i}: ${report.views} views, ${report.retries} retries, ` +
            `${report.generations.length} generations seen`,
        );
        assert.deepEqual(report.violations, [], `volume ${i}`);
        assert.ok(report.views >= 50, `volume ${i}: only ${report.views} views`);
        assert.ok(report.generations.length >= 5, `volume ${i}: ${report.generations}`);
        assert.equal(report.generations.at(-1), want);
      }
      for (const target of targets) {
        assert.equal(readView(target, gens), want, "still the last good generation");
        const names = [...Deno.readDirSync(target)].map((e) => e.name);
        const hidden = names.filter((n) => n.startsWith(".."));
        assert.equal(hidden.length, 2, `crash debris left in ${target}: ${hidden}`);
      }
      assert.equal(await driver!.metric("cacerts_csi_volumes"), VOLUMES);
      console.log(`${kills.join("; ")}; ${lastGood} generations, ${garbage} garbage updates`);
    } finally {
      for (const r of readers) await r.stop();
      client?.close();
      await driver?.process.stop();
      await scratch.cleanup();
    }
  },
});
