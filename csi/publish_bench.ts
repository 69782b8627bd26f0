/**
 * Benchmark of the CSI driver against a real kube-apiserver (from the test harness):
 *
 * - NodePublishVolume p50/p99 from a grpc-go client (csi-churn's timing mode), with the same
 *   connection's NodeGetCapabilities round trip as the baseline.
 * - Secret-change-to-swap latency with 1, 100 and 1,000 published volumes (`--plain-dir`):
 *   from the Secret update call to each volume's swap (the driver's "trust store written" log
 *   line), with the delivery of the same change to a plain watch in this process as the
 *   baseline.
 *
 * Targets: publish p99 ≤ 50 ms; swap p99 ≤ 1 s at 1,000 volumes. Printed, never asserted.
 *
 * Run: `./scripts/deno run -A csi/publish_bench.ts [--sizes=1,100,1000] [--rounds=3]`
 *
 * @module
 */

import { CoreV1Api, Watch } from "@kubernetes/client-node";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createCa, runCommand, startKubeApiServer, toolPath } from "../tests/harness/mod.ts";
import { startDriverProcess } from "./testing.ts";

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1)))];
}

function fmt(ms: number): string {
  return `${ms.toFixed(1)} ms`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      sizes: { type: "string", default: "1,100,1000" },
      rounds: { type: "string", default: "3" },
      publishes: { type: "string", default: "200" },
      "base-roots": { type: "string", default: "none" },
      "render-concurrency": { type: "string", default: "32" },
    },
  });
  const sizes = (values.sizes as string).split(",").map(Number);
  const rounds = Number(values.rounds);
  const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-bench-" });
  const kube = await startKubeApiServer();
  const core = kube.kubeConfig.makeApiClient(CoreV1Api);
  let driver: Awaited<ReturnType<typeof startDriverProcess>> | undefined;
  try {
    const cas = await Promise.all(
      Array.from({ length: rounds + 1 }, (_, i) => createCa(dir, `ca-${i}`, `Bench CA ${i}`)),
    );
    const crd = new URL("../tests/harness/fixtures/caproviderclass_crd.yaml", import.meta.url);
    await kube.kubectl(["apply", "-f", crd.pathname], { check: true });
    await kube.kubectl(
      ["wait", "--for=condition=established", "crd/caproviderclasses.cacerts.csi.cert-manager.io"],
      { check: true },
    );
    const objects = [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: "bench" } },
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { namespace: "bench", name: "ca" },
        data: { "ca.crt": btoa(cas[0].certPem) },
      },
      {
        apiVersion: "cacerts.csi.cert-manager.io/v1alpha1",
        kind: "CAProviderClass",
        metadata: { namespace: "bench", name: "spire-ca" },
        spec: { refs: [{ kind: "Secret", name: "ca" }] },
      },
    ];
    for (const o of objects) {
      await kube.kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(o), check: true });
    }
    driver = await startDriverProcess({
      dir,
      kubeconfigPath: kube.kubeconfigPath,
      args: [
        "--plain-dir",
        `--base-roots=${values["base-roots"]}`,
        `--render-concurrency=${values["render-concurrency"]}`,
      ],
    });
    const ctx = (pod: string) =>
      [
        "csi.storage.k8s.io/ephemeral=true",
        `csi.storage.k8s.io/pod.name=${pod}`,
        "csi.storage.k8s.io/pod.namespace=bench",
        "caProviderClasses=spire-ca",
      ].join(",");

    // --- NodePublishVolume latency ---
    // Production volumes are tmpfs mounts; one tmpfs under all plain-dir volumes keeps the medium
    // the same without mounting 1,000 of them.
    const fast = join(dir, "fast");
    await Deno.mkdir(fast);
    const onTmpfs = (await runCommand(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", fast]))
      .code === 0;
    console.log(`volumes on ${onTmpfs ? "tmpfs" : "the temp directory's disk (mount failed)"}`);
    const pubDir = join(fast, "publish");
    const pub = await runCommand([
      toolPath("csi-churn"),
      `-endpoint=${driver.endpoint}`,
      `-publish=${values.publishes}`,
      `-target-dir=${pubDir}`,
      `-vol-context=${ctx("pub")}`,
    ], { check: true });
    const p = JSON.parse(pub.stdout);
    console.log(
      `NodePublishVolume (${p.count} new volumes): p50 ${fmt(p.p50Ms)}, p99 ${fmt(p.p99Ms)}; ` +
        `baseline NodeGetCapabilities p50 ${fmt(p.baselineP50Ms)}, p99 ${fmt(p.baselineP99Ms)}; ` +
        `ratio p99 ${(p.p99Ms / p.baselineP99Ms).toFixed(1)}x; target p99 <= 50 ms: ` +
        (p.p99Ms <= 50 ? "met" : "MISSED"),
    );
    // Drop those volumes again so they do not count in the swap sizes.
    for (let i = 0; i < p.count; i++) {
      await runCommand([
        toolPath("csc"),
        "node",
        "unpublish",
        "--endpoint",
        driver.endpoint,
        "--target-path",
        join(pubDir, `v${i}`),
        `bench-${i}`,
      ], { check: true });
    }

    // --- Secret change to swap latency ---
    let published = 0;
    const volRoot = join(fast, "volumes");
    await Deno.mkdir(volRoot, { recursive: true });
    let caIndex = 0;
    for (const size of sizes) {
      if (size > published) {
        // Publishes bench-0..bench-(size-1): the ones that exist are republished (no-ops).
        const out = await runCommand([
          toolPath("csi-churn"),
          `-endpoint=${driver.endpoint}`,
          `-publish=${size}`,
          `-target-dir=${volRoot}`,
          `-vol-context=${ctx("swap")}`,
        ], { check: true });
        JSON.parse(out.stdout);
        published = size;
      }
      const swapMs: number[] = [];
      const baseMs: number[] = [];
      for (let r = 0; r < rounds; r++) {
        caIndex = (caIndex + 1) % cas.length;
        const seen = new Map<string, number>();
        let baseAt = 0;
        const watch = new Watch(kube.kubeConfig);
        let t0 = 0;
        const abort = await watch.watch(
          "/api/v1/namespaces/bench/secrets",
          { fieldSelector: "metadata.name=ca" },
          (phase) => {
            if (phase === "MODIFIED" && t0 && !baseAt) baseAt = Date.now();
          },
          () => {},
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        // Swap times come from the driver's own "trust store written" log lines (wall clock, ms),
        // so that measuring does not compete with the driver for the CPU.
        const logOffset = (await Deno.stat(driver.process.logPath)).size;
        t0 = Date.now();
        await core.replaceNamespacedSecret({
          namespace: "bench",
          name: "ca",
          body: {
            metadata: { namespace: "bench", name: "ca" },
            data: { "ca.crt": btoa(cas[caIndex].certPem) },
          },
        });
        const deadline = Date.now() + 30_000;
        while (seen.size < size && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          const file = await Deno.open(driver.process.logPath);
          await file.seek(logOffset, Deno.SeekMode.Start);
          const text = new TextDecoder().decode(await new Response(file.readable).arrayBuffer());
          for (const line of text.split("\n")) {
            if (!line.includes('"trust store written"')) continue;
            const entry = JSON.parse(line) as { time: string; targetPath: string };
            if (!entry.targetPath.startsWith(volRoot + "/")) continue;
            const at = Date.parse(entry.time);
            if (at >= t0 && !seen.has(entry.targetPath)) seen.set(entry.targetPath, at);
          }
        }
        abort.abort();
        if (seen.size < size) {
          console.log(`  round ${r}: only ${seen.size}/${size} volumes swapped`);
        }
        for (const at of seen.values()) swapMs.push(at - t0);
        if (baseAt) baseMs.push(baseAt - t0);
        // Let the driver settle before the next round.
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      const s99 = percentile(swapMs, 0.99);
      const b50 = percentile(baseMs, 0.5);
      console.log(
        `Secret change -> swap, ${size} volume(s), ${rounds} rounds: p50 ${
          fmt(percentile(swapMs, 0.5))
        }, p99 ${fmt(s99)}; baseline watch delivery p50 ${fmt(b50)}; ratio p99/baseline ${
          (s99 / b50).toFixed(1)
        }x` + (size === 1000 ? `; target p99 <= 1 s: ${s99 <= 1000 ? "met" : "MISSED"}` : ""),
      );
    }
  } finally {
    await driver?.process.stop();
    await runCommand(["umount", join(dir, "fast")]);
    await kube.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
