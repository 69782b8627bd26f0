/**
 * Fault: the kube-apiserver goes away under the driver's watches, and a watch is answered
 * `410 Gone`. The driver reaches the apiserver through {@link ApiProxy}, which lets the test hold
 * a re-established watch at an old resourceVersion while the Secret changes many times, etcd's
 * history is compacted and the apiserver restarted (its watch cache starts over), so the watch
 * cannot resume. In every step no update is missed: the volume ends with the Secret's content in
 * the cluster, which includes the last acknowledged write; readers never see a mixed store.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { CoreV1Api } from "@kubernetes/client-node";
import { type DriverProcess, startDriverProcess } from "../harness/driver_process.ts";
import { needsTools, waitFor } from "../harness/mod.ts";
import { ApiProxy, compactEtcd, etcdUrlOf } from "./api_proxy.ts";
import {
  apply,
  caProviderClass,
  coreApi,
  CsiClient,
  type Generation,
  generationOf,
  makeGenerations,
  NS,
  pemFingerprints,
  publishRequest,
  putSecret,
  readView,
  setupCluster,
  sleep,
  startScratchApiServer,
  StoreReader,
} from "./helpers.ts";

/** The generation the Secret holds in the cluster right now. */
async function clusterGeneration(core: CoreV1Api, gens: Generation[]): Promise<number> {
  const secret = await core.readNamespacedSecret({ namespace: NS, name: "ca-bundle" });
  const pem = atob(secret.data?.["ca.crt"] ?? "");
  return generationOf(pemFingerprints(pem), gens, "Secret ca-bundle");
}

Deno.test({
  name: "fault: apiserver restarts and 410 Gone during watches; no update is missed",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const scratch = await startScratchApiServer("cacerts-fault-apiserver-");
    const { dir, kube } = scratch;
    let proxy: ApiProxy | undefined;
    let driver: DriverProcess | undefined;
    let client: CsiClient | undefined;
    let reader: StoreReader | undefined;
    const target = join(dir, "pods", "web-0", "mount");
    try {
      await setupCluster(kube);
      const core = coreApi(kube.kubeConfig);
      const gens = await makeGenerations(60);
      let next = 1;
      await putSecret(core, "ca-bundle", { "ca.crt": gens[next - 1].pem });
      await apply(kube, caProviderClass("spire-ca", { kind: "Secret", name: "ca-bundle" }));
      proxy = await ApiProxy.start(kube, dir);
      driver = await startDriverProcess({
        dir,
        kubeconfigPath: proxy.kubeconfigPath,
        args: ["--base-roots=none"],
      });
      client = new CsiClient(driver.endpoint);
      await client.publish(publishRequest("csi-vol-0", target, "web-0", "spire-ca"));
      assert.equal(readView(target, gens), 1);
      reader = new StoreReader(target, gens);
      const converge = async (want: number, what: string) => {
        await waitFor(what, () => {
          try {
            return readView(target, gens) === want;
          } catch {
            return false;
          }
        }, { timeoutMs: 45_000, intervalMs: 50, detail: () => driver!.process.logTail() });
      };

      await t.step("restart while the Secret is written continuously", async () => {
        let acked = next;
        let writing = true;
        let failed = 0;
        const writer = (async () => {
          while (writing) {
            const g = next + 1;
            try {
              await putSecret(core, "ca-bundle", { "ca.crt": gens[g - 1].pem });
              acked = g;
              next = g;
            } catch {
              // apiserver down: the write may or may not have landed; the same generation is
              // written again until one is acknowledged.
              failed++;
            }
            await sleep(100);
          }
        })();
        await sleep(800);
        const before = acked;
        await kube.restart();
        writing = false;
        await writer;
        const truth = await clusterGeneration(core, gens);
        assert.ok(truth >= acked, `cluster holds ${truth}, last acknowledged write ${acked}`);
        assert.ok(acked > before, "writes were acknowledged after the restart too");
        await converge(truth, `volume follows to generation ${truth}`);
        console.log(`restart 1: ${failed} writes failed while down; converged to ${truth}`);
      });

      await t.step("restart right after a write, nothing written afterwards", async () => {
        next++;
        await putSecret(core, "ca-bundle", { "ca.crt": gens[next - 1].pem });
        await kube.restart();
        await converge(next, `volume follows to generation ${next}`);
      });

      await t.step(
        "410 Gone: watch held at an old resourceVersion, history compacted",
        async () => {
          const goneBefore = proxy!.watches.filter((w) => w.gone).length;
          // The driver watches the class and the Secret; both must be up before the cut.
          await waitFor("both watches established", () => proxy!.activeWatches >= 2, {
            timeoutMs: 30_000,
            detail: () => driver!.process.logTail(10),
          });
          proxy!.holdWatches();
          const cut = proxy!.cutWatches();
          assert.ok(cut >= 2, `expected the class and Secret watches in flight, cut ${cut}`);
          await waitFor("the driver re-watches (held)", () => proxy!.held >= 2, {
            timeoutMs: 20_000,
            detail: () =>
              `cut ${cut}, held ${proxy!.held}, watches ${JSON.stringify(proxy!.watches)}\n` +
              driver!.process.logTail(10),
          });
          const heldFrom = proxy!.watches.filter((w) => w.path.endsWith("/secrets")).at(-1)!;
          for (let i = 0; i < 20; i++) {
            next++;
            await putSecret(core, "ca-bundle", { "ca.crt": gens[next - 1].pem });
          }
          const revision = await compactEtcd(await etcdUrlOf(kube));
          assert.ok(revision > Number(heldFrom.resourceVersion));
          await kube.restart();
          next++;
          await putSecret(core, "ca-bundle", { "ca.crt": gens[next - 1].pem });
          // While the watch is held the driver cannot know: the store still has an older one.
          assert.ok(readView(target, gens)! < next);
          proxy!.releaseWatches();
          await waitFor(
            "the held Secret watch is answered 410 Gone",
            () => proxy!.watches.filter((w) => w.gone).length > goneBefore,
            {
              timeoutMs: 20_000,
              detail: () => JSON.stringify(proxy!.watches.slice(-6)) + driver!.process.logTail(),
            },
          );
          const gone = proxy!.watches.filter((w) => w.gone).at(-1)!;
          console.log(
            `410 for ${gone.path} from resourceVersion ${gone.resourceVersion} ` +
              `(HTTP ${gone.status}); etcd compacted at ${revision}`,
          );
          await converge(next, `volume follows to generation ${next} after 410`);
          // And the watch that replaced it is live: one more update arrives without any help.
          next++;
          await putSecret(core, "ca-bundle", { "ca.crt": gens[next - 1].pem });
          await converge(next, `volume follows to generation ${next} on the new watch`);
        },
      );

      const report = await reader.stop();
      reader = undefined;
      console.log(`${report.views} views, ${report.generations.length} generations seen`);
      assert.deepEqual(report.violations, []);
      assert.equal(report.generations.at(-1), next);
      driver.process.assertRunning();
    } finally {
      await reader?.stop();
      client?.close();
      await driver?.process.stop();
      await proxy?.close();
      await scratch.cleanup();
    }
  },
});
