/**
 * The driver's memory limit covers what its cgroup is charged: the real driver (csi/main.ts with
 * the DaemonSet's `DENO_V8_FLAGS`, default `--base-roots=bundled`, real tmpfs volumes) runs in a
 * memory cgroup limited to the DaemonSet's `limits.memory`, csi-churn publishes
 * {@link VOLUMES} volumes (kubelet's default pod limit) against a real kube-apiserver, then a
 * Secret change makes every store swap; for debian and for opensuse (the largest bundled store
 * in pages: 559 files, 1.61 MiB of shmem per volume). The cgroup's peak must stay below the limit
 * with no OOM kill.
 *
 * Why: a tmpfs page is charged to the memory cgroup of the process that writes it, the driver's
 * container, not the pod that reads it. So the limit has to hold the driver's own memory plus
 * every volume's store plus the stores being swapped. Measured on the 2-core development machine
 * (cgroup v1): shmem per volume 1.07 MiB debian, 1.62 MiB opensuse, driver VmRSS 175–189 MB,
 * cgroup peak 338 MiB, under the 512Mi limit. Before AtomicWriter hard-linked equal files
 * (1.62 and 2.71 MiB per volume) the peak was 480 MiB; at the former 256Mi limit the driver is
 * OOM-killed around the 100th debian volume, which this test reports as a failed publish.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadAllYaml } from "@kubernetes/client-node";
import { CLASSES_ATTRIBUTE } from "../api/mod.ts";
import { parseMemoryQuantity } from "../cli/heap_flags.ts";
import { createCa, needsTools, runCommand, toolPath, waitFor } from "./harness/mod.ts";
import { MemoryCgroup } from "./harness/cgroup.ts";
import { startDriverProcess } from "./harness/driver_process.ts";
import {
  apply,
  caProviderClass,
  coreApi,
  NS,
  putSecret,
  setupCluster,
  startScratchApiServer,
  unmountUnder,
} from "./faults/helpers.ts";

/** Volumes per family: kubelet's default `maxPods`, one volume a pod. */
const VOLUMES = 110;
const FAMILIES = ["debian", "opensuse"] as const;
const MiB = 1024 * 1024;

interface DriverContainer {
  name: string;
  env?: { name: string; value?: string }[];
  resources?: { limits?: { memory?: string } };
}

/** The csi-driver container's `limits.memory` (bytes) and `DENO_V8_FLAGS` from the manifest. */
async function daemonSetLimits(): Promise<{ limitBytes: number; v8Flags: string }> {
  const path = fileURLToPath(new URL("../manifests/csi/daemonset.yaml", import.meta.url));
  const docs = loadAllYaml(await Deno.readTextFile(path)) as {
    kind?: string;
    spec?: { template: { spec: { containers: DriverContainer[] } } };
  }[];
  const ds = docs.find((d) => d.kind === "DaemonSet");
  const c = ds?.spec?.template.spec.containers.find((c) => c.name === "csi-driver");
  const limit = c?.resources?.limits?.memory;
  const v8Flags = c?.env?.find((e) => e.name === "DENO_V8_FLAGS")?.value;
  assert.ok(limit && v8Flags, "csi-driver has limits.memory and DENO_V8_FLAGS");
  return { limitBytes: parseMemoryQuantity(limit), v8Flags };
}

/** `shmem` of the cgroup's memory.stat: the tmpfs pages charged to it. */
function shmemBytes(cgroup: MemoryCgroup): number {
  const stat = Deno.readTextFileSync(join(cgroup.path, "memory.stat"));
  return Number(/^shmem (\d+)$/m.exec(stat)?.[1] ?? NaN);
}

Deno.test({
  name:
    `${VOLUMES} bundled-root tmpfs volumes and a swap of every store stay under the DaemonSet's memory limit`,
  // Root for tmpfs mounts and cgroups; in CI a missing one fails.
  ignore: needsTools(["csi-churn", "kube-apiserver", "etcd", "kubectl"]).ignore ||
    (Deno.uid() !== 0 && Deno.env.get("CI") !== "true"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { limitBytes, v8Flags } = await daemonSetLimits();
    const scratch = await startScratchApiServer("cacerts-csi-tmpfs-mem-");
    const { dir, kube } = scratch;
    const targets = join(dir, "targets");
    const cgroup = MemoryCgroup.create("csi-tmpfs-memory");
    let driver: Awaited<ReturnType<typeof startDriverProcess>> | undefined;
    try {
      cgroup.setLimit(limitBytes);
      await setupCluster(kube);
      const core = coreApi(kube.kubeConfig);
      const [a, b] = [
        await createCa(dir, "a", "Tmpfs Memory CA A"),
        await createCa(dir, "b", "Tmpfs Memory CA B"),
      ];
      await putSecret(core, "ca", { "ca.crt": a.certPem });
      await apply(kube, caProviderClass("spire-ca", { kind: "Secret", name: "ca" }));
      driver = await startDriverProcess({
        dir,
        kubeconfigPath: kube.kubeconfigPath,
        args: ["--log-level=warn"],
        env: { DENO_V8_FLAGS: v8Flags },
        wrap: (argv) => cgroup.wrap(argv),
      });
      const drv = driver;
      let writes = await drv.metric("cacerts_csi_store_writes_total");
      let ca = a;
      const report: string[] = [];
      for (const os of FAMILIES) {
        const before = shmemBytes(cgroup);
        const out = await runCommand([
          toolPath("csi-churn"),
          `-endpoint=${drv.endpoint}`,
          `-publish=${VOLUMES}`,
          "-concurrency=8",
          `-id-prefix=${os}-`,
          `-target-dir=${join(targets, os)}`,
          `-vol-context=${
            [
              "csi.storage.k8s.io/ephemeral=true",
              `csi.storage.k8s.io/pod.name=${os}`,
              `csi.storage.k8s.io/pod.namespace=${NS}`,
              `${CLASSES_ATTRIBUTE}=spire-ca`,
              `os=${os}`,
            ].join(",")
          }`,
        ]);
        assert.equal(out.code, 0, `publish ${os}: ${out.stderr}\n${drv.process.logTail()}`);
        assert.equal(await drv.metric("cacerts_csi_volumes"), VOLUMES, os);
        writes += VOLUMES;
        const perVolume = (shmemBytes(cgroup) - before) / VOLUMES / MiB;
        const published = cgroup.stats();

        // A new CA: every store swaps (its bundles and the CA's own files are new pages).
        ca = ca === a ? b : a;
        await putSecret(core, "ca", { "ca.crt": ca.certPem });
        const want = writes + VOLUMES;
        await waitFor(
          `${os}: ${VOLUMES} stores swapped`,
          async () => (await drv.metric("cacerts_csi_store_writes_total")) >= want,
          { timeoutMs: 60_000, intervalMs: 250, detail: () => drv.process.logTail() },
        );
        writes = want;
        drv.process.assertRunning();
        const swapped = cgroup.stats();
        report.push(
          `${os}: shmem ${perVolume.toFixed(2)} MiB/volume, usage after publish ${
            (published.usageBytes / MiB).toFixed(0)
          } MiB, after the swap ${(swapped.usageBytes / MiB).toFixed(0)} MiB, peak so far ${
            (swapped.peakBytes / MiB).toFixed(0)
          } MiB, driver VmRSS ${drv.rssMB().toFixed(0)} MB`,
        );
        // Unpublished before the next family, so each family's peak is its own 110 volumes.
        const off = await runCommand([
          toolPath("csi-churn"),
          `-endpoint=${drv.endpoint}`,
          `-unpublish=${VOLUMES}`,
          "-concurrency=8",
          `-id-prefix=${os}-`,
          `-target-dir=${join(targets, os)}`,
        ]);
        assert.equal(off.code, 0, `unpublish ${os}: ${off.stderr}\n${drv.process.logTail()}`);
        assert.equal(await drv.metric("cacerts_csi_volumes"), 0, os);
      }
      const stats = cgroup.stats();
      console.log(report.join("\n"));
      console.log(
        `cgroup peak ${(stats.peakBytes / MiB).toFixed(0)} MiB of the ${
          limitBytes / MiB
        } MiB limit`,
      );
      drv.process.assertRunning();
      assert.equal(stats.oomKills, 0, "no OOM kill in the driver's cgroup");
      assert.ok(
        stats.peakBytes < limitBytes,
        `cgroup peak ${stats.peakBytes} reached the limit ${limitBytes}: ${report.join("; ")}`,
      );
    } finally {
      await driver?.process.stop();
      await unmountUnder(targets);
      await cgroup.remove();
      await scratch.cleanup();
    }
  },
});
