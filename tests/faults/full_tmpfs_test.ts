/**
 * Fault: the tmpfs a store lives on is full. At the AtomicWriter level the space left is swept
 * from nothing upwards, in bytes and in inodes, so the write runs out at every stage of a swap
 * (new directory, each file, the `..data` link, the top-level links): each failing write throws
 * ENOSPC and leaves the old store whole and readable through every link; once space frees, the
 * same writer's next write succeeds and leaves no debris. Through the driver: a volume's tmpfs is
 * filled, a Secret update fails cleanly (failure metric, Warning Event, abnormal volume
 * condition, old store intact), and once space frees the store catches up.
 */
import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { join } from "node:path";
import {
  AtomicWriter,
  buildTrustSet,
  parseOsFamily,
  type Payload,
  renderTrustStore,
} from "../../trust_store/mod.ts";
import { type DriverProcess, startDriverProcess } from "../harness/driver_process.ts";
import { needsTools, runCommand, waitFor } from "../harness/mod.ts";
import {
  apply,
  caProviderClass,
  coreApi,
  CsiClient,
  type Generation,
  makeGenerations,
  NS,
  publishRequest,
  putSecret,
  readBundleLink,
  readView,
  setupCluster,
  startScratchApiServer,
  unmountUnder,
} from "./helpers.ts";

async function payloadOf(gen: Generation): Promise<Payload> {
  const set = await buildTrustSet([{ name: `generation ${gen.index}`, text: gen.pem }]);
  return renderTrustStore(parseOsFamily("debian"), set);
}

/** Fills the file system at `dir` completely, then frees `keep` blocks or inodes. */
function fill(dir: string, resource: "bytes" | "inodes", keep: number): string[] {
  const made: string[] = [];
  if (resource === "bytes") {
    const path = join(dir, "filler");
    const file = Deno.openSync(path, { write: true, createNew: true });
    const page = new Uint8Array(4096).fill(0x5a);
    try {
      for (;;) file.writeSync(page);
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOSPC") throw error;
    }
    const size = file.statSync().size;
    file.truncateSync(Math.max(0, size - keep * 4096));
    file.close();
    made.push(path);
    assert.equal(statfsSync(dir).bavail, keep);
  } else {
    try {
      for (let i = 0;; i++) {
        const path = join(dir, `filler-${i}`);
        Deno.writeFileSync(path, new Uint8Array(0));
        made.push(path);
      }
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOSPC") throw error;
    }
    for (let i = 0; i < keep; i++) Deno.removeSync(made.pop()!);
    assert.equal(statfsSync(dir).ffree, keep);
  }
  return made;
}

function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** What a reader sees through each top-level name (links resolved). */
function visible(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name.startsWith("..") || entry.name.startsWith("filler")) continue;
    const path = join(dir, entry.name);
    const st = Deno.statSync(path); // follows the link: throws if it dangles
    out.set(
      entry.name,
      st.isDirectory
        ? [...Deno.readDirSync(path)].map((e) => e.name).sort().join(",")
        : new TextDecoder().decode(Deno.readFileSync(path)),
    );
  }
  return out;
}

Deno.test({
  name: "fault: AtomicWriter on a full tmpfs fails with ENOSPC at every stage and keeps the store",
  ignore: Deno.uid() !== 0,
  fn: async (t) => {
    const gens = await makeGenerations(2);
    const [p1, p2] = await Promise.all(gens.map(payloadOf));
    const dir = await Deno.makeTempDir({ prefix: "cacerts-fault-tmpfs-" });
    try {
      for (const resource of ["bytes", "inodes"] as const) {
        await t.step(`out of ${resource}`, async () => {
          let failures = 0;
          let succeededAt: number | undefined;
          for (let keep = 0; keep <= 40 && succeededAt === undefined; keep++) {
            const vol = join(dir, `${resource}-${keep}`);
            await Deno.mkdir(vol);
            await runCommand(
              ["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=64", "tmpfs", vol],
              {
                check: true,
              },
            );
            try {
              const writer = new AtomicWriter(vol, { fsync: false });
              await writer.write(p1);
              const before = visible(vol);
              const dataBefore = Deno.readLinkSync(join(vol, "..data"));
              const fillers = fill(vol, resource, keep);
              try {
                await writer.write(p2);
                succeededAt = keep;
              } catch (error) {
                failures++;
                assert.equal((error as { code?: string }).code, "ENOSPC", String(error));
                assert.match((error as Error).message, /No space left on device/);
                assert.equal(
                  Deno.readLinkSync(join(vol, "..data")),
                  dataBefore,
                  `${resource} left ${keep}: ..data moved although the write failed`,
                );
                assert.equal(readView(vol, gens), 1, `${resource} left ${keep}`);
                assert.equal(readBundleLink(vol, gens), 1);
                assert.deepEqual(visible(vol), before, `${resource} left ${keep}: links changed`);
              }
              // A successful write removes entries it does not own (the filler) itself.
              for (const f of fillers) removeIfPresent(f);
              if (succeededAt === undefined) await writer.write(p2);
              assert.equal(readView(vol, gens), 2);
              const names = [...Deno.readDirSync(vol)].map((e) => e.name);
              assert.deepEqual(
                names.filter((n) => n.startsWith("..")).length,
                2,
                `debris after recovery: ${names}`,
              );
              assert.deepEqual(
                [...visible(vol).keys()].sort(),
                [...p2.keys()].map((k) => k.split("/")[0]).filter((v, i, a) => a.indexOf(v) === i)
                  .sort(),
              );
            } finally {
              await runCommand(["umount", vol], { check: true });
            }
          }
          console.log(`${resource}: ${failures} failing writes, success with ${succeededAt} free`);
          assert.ok(failures >= 2, `only ${failures} failing writes`);
          assert.notEqual(succeededAt, undefined, "the write never fitted");
        });
      }
    } finally {
      await unmountUnder(dir);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "fault: a driver volume's tmpfs fills up; the update fails cleanly and recovers",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const scratch = await startScratchApiServer("cacerts-fault-tmpfs-driver-");
    const { dir, kube } = scratch;
    let driver: DriverProcess | undefined;
    let client: CsiClient | undefined;
    const target = join(dir, "pods", "web-0", "mount");
    try {
      await setupCluster(kube);
      const core = coreApi(kube.kubeConfig);
      const gens = await makeGenerations(4);
      await putSecret(core, "ca-bundle", { "ca.crt": gens[0].pem });
      await apply(kube, caProviderClass("spire-ca", { kind: "Secret", name: "ca-bundle" }));
      driver = await startDriverProcess({
        dir,
        kubeconfigPath: kube.kubeconfigPath,
        args: ["--base-roots=none", "--tmpfs-size=128Ki"],
      });
      client = new CsiClient(driver.endpoint);
      const request = publishRequest("csi-vol-0", target, "web-0", "spire-ca");
      await client.publish(request);
      assert.equal(readView(target, gens), 1);
      const failures = () => driver!.metric("cacerts_csi_update_failures_total");
      let fillers: string[] = [];

      await t.step("update on a full tmpfs: ENOSPC reported, old store kept", async () => {
        const before = visible(target);
        fillers = fill(target, "bytes", 0);
        const failed = await failures();
        await putSecret(core, "ca-bundle", { "ca.crt": gens[1].pem });
        await waitFor("the update fails", async () => (await failures()) > failed, {
          timeoutMs: 20_000,
          detail: () => driver!.process.logTail(),
        });
        assert.equal(readView(target, gens), 1);
        assert.deepEqual(visible(target), before);
        const stats = await client!.stats("csi-vol-0", target);
        assert.equal(stats.volumeCondition?.abnormal, true);
        assert.match(
          stats.volumeCondition?.message ?? "",
          /serving the last good trust store; latest update failed: .*No space left on device/,
        );
        await waitFor("a Warning Event on the pod", async () => {
          const events = await core.listNamespacedEvent({ namespace: NS });
          return events.items.some((e) =>
            e.reason === "TrustStoreUpdateFailed" && e.involvedObject.name === "web-0" &&
            /No space left on device/.test(e.message ?? "")
          );
        }, { timeoutMs: 15_000 });
      });

      await t.step("once space frees, a republish brings the pending update", async () => {
        for (const f of fillers) removeIfPresent(f);
        // kubelet republishes every volume periodically (requiresRepublish).
        await client!.publish(request);
        await waitFor("the store catches up", () => readView(target, gens) === 2, {
          timeoutMs: 15_000,
          detail: () => driver!.process.logTail(),
        });
        const stats = await client!.stats("csi-vol-0", target);
        assert.deepEqual(stats.volumeCondition, {
          abnormal: false,
          message: "trust store current",
        });
      });

      await t.step("and the next Secret update succeeds", async () => {
        await putSecret(core, "ca-bundle", { "ca.crt": gens[2].pem });
        await waitFor("the store follows", () => readView(target, gens) === 3, {
          timeoutMs: 15_000,
          detail: () => driver!.process.logTail(),
        });
        assert.equal(
          [...Deno.readDirSync(target)].filter((e) => e.name.startsWith("..")).length,
          2,
        );
      });
      driver.process.assertRunning();
    } finally {
      client?.close();
      await driver?.process.stop();
      await scratch.cleanup();
    }
  },
});
