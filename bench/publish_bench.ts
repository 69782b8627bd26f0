/**
 * Benchmark of the CSI driver against a real kube-apiserver (from the test harness):
 *
 * - NodePublishVolume p50/p99 from a grpc-go client (csi-churn's timing mode) for each OS family,
 *   with the same connection's NodeGetCapabilities round trip as the baseline.
 * - Secret-change-to-swap latency with 1, 100 and 1,000 published volumes (`--plain-dir`):
 *   from the Secret update call to each volume's swap (the driver's "trust store written" log
 *   line), with the delivery of the same change to a plain watch in this process as the
 *   baseline.
 *
 * - Resident memory of the driver (VmRSS) idle and with the largest number of volumes.
 *
 * The driver runs with `--base-roots=none` by default: each store holds the referenced CA only
 * (the SPIRE-bundle case). Then a second driver with `--base-roots=bundled` (the driver's
 * default: ~140 public roots, ~280 files per store) is timed at `--bundled-sizes` volumes, and
 * its VmRSS is read idle, after each size is published, after that size's swaps and once every
 * volume is unpublished again (baseline: the same driver idle, so a driver that does not give
 * memory back shows as a ratio above 1). 110 is kubelet's default pod limit per node, the most
 * volumes a node has with one volume per pod.
 *
 * Both drivers run with the `DENO_V8_FLAGS` of the DaemonSet's csi-driver container
 * (manifests/csi/daemonset.yaml), so the figures are those of the shipped configuration;
 * `--v8-flags=...` overrides them and `--v8-flags=none` runs without; the memory labels name the
 * flags.
 *
 * The same driver is then timed with the CA in a ClusterTrustBundle (class `spire-ctb`, a ref by
 * name) at `--ctb-sizes` volumes: the bundle is patched and each volume's swap is timed the same way.
 *
 * Targets: publish p99 ≤ 50 ms; swap p99 ≤ 1 s at 1,000 volumes (CA only), at 100 volumes from a
 * ClusterTrustBundle and at 110 volumes (bundled roots); VmRSS ≤ 100 MB idle and ≤ 130 MB at 110 volumes with bundled roots. Printed,
 * never asserted. Every figure is also printed as a `BENCH {json}` line (see bench/report.ts).
 *
 * Run: `./scripts/deno run -A bench/publish_bench.ts [--sizes=1,100,1000] [--rounds=3]
 * [--publishes=100] [--families=debian,alpine,...] [--bundled-sizes=1,110] [--v8-flags=...]`
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import {
  CLASS_API_VERSION,
  CLASS_GROUP,
  CLASS_KIND,
  CLASS_PLURAL,
  CLASSES_ATTRIBUTE,
} from "../api/mod.ts";
import {
  CoreV1Api,
  CustomObjectsApi,
  loadAllYaml,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createCa, runCommand, startKubeApiServer, toolPath } from "../tests/harness/mod.ts";
import { type DriverProcess, startDriverProcess } from "../tests/harness/driver_process.ts";
import { nodeService } from "../csi/proto.ts";
import { OS_FAMILIES } from "../trust_store/mod.ts";
import { benchLine } from "./report.ts";
import { bareDenoRssMB, readRss } from "./proc.ts";
import { setTimeout as delay } from "node:timers/promises";

const MEMORY = "resident memory (VmRSS; peak = VmHWM)";

type Call = (req: object, cb: (e: grpc.ServiceError | null) => void) => void;

/** Unpublishes `count` volumes `bench-<i>` at `<dir>/v<i>` over one grpc-js channel. */
/** The ClusterTrustBundle the `swap-ctb` phase changes (no signer, so a name without `:`). */
const BUNDLE = "bench-ca";

async function unpublishAll(endpoint: string, dir: string, count: number): Promise<void> {
  const Client = grpc.makeGenericClientConstructor(nodeService, "Node");
  const client = new Client(endpoint, grpc.credentials.createInsecure());
  const call = (client as unknown as Record<string, Call>).NodeUnpublishVolume.bind(client);
  try {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        await new Promise<void>((resolve, reject) =>
          call(
            { volumeId: `bench-${i}`, targetPath: join(dir, `v${i}`) },
            (e) => (e ? reject(e) : resolve()),
          )
        );
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    client.close();
  }
}

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
      publishes: { type: "string", default: "100" },
      families: { type: "string", default: OS_FAMILIES.join(",") },
      "base-roots": { type: "string", default: "none" },
      "render-concurrency": { type: "string", default: "32" },
      "bundled-sizes": { type: "string", default: "1,110" },
      "v8-flags": { type: "string", default: "" },
      "ctb-sizes": { type: "string", default: "1,100" },
    },
  });
  const given = values["v8-flags"] as string;
  const v8Flags = given === "none" ? "" : given || await daemonSetV8Flags();
  const env = v8Flags ? { DENO_V8_FLAGS: v8Flags } : undefined;
  const flagsNote = v8Flags ? `, DENO_V8_FLAGS=${v8Flags}` : ", no V8 flags";
  const sizes = (values.sizes as string).split(",").map(Number);
  const rounds = Number(values.rounds);
  const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-bench-" });
  const kube = await startKubeApiServer();
  const core = kube.kubeConfig.makeApiClient(CoreV1Api);
  let driver: DriverProcess | undefined;
  let bundled: DriverProcess | undefined;
  try {
    const cas = await Promise.all(
      Array.from({ length: rounds + 1 }, (_, i) => createCa(dir, `ca-${i}`, `Bench CA ${i}`)),
    );
    const crd = new URL("../tests/harness/fixtures/caproviderclass_crd.yaml", import.meta.url);
    await kube.kubectl(["apply", "-f", crd.pathname], { check: true });
    await kube.kubectl(
      ["wait", "--for=condition=established", `crd/${CLASS_PLURAL}.${CLASS_GROUP}`],
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
        apiVersion: CLASS_API_VERSION,
        kind: CLASS_KIND,
        metadata: { namespace: "bench", name: "spire-ca" },
        spec: { refs: [{ kind: "Secret", name: "ca" }] },
      },
      {
        apiVersion: "certificates.k8s.io/v1",
        kind: "ClusterTrustBundle",
        metadata: { name: BUNDLE },
        spec: { trustBundle: cas[0].certPem },
      },
      {
        apiVersion: CLASS_API_VERSION,
        kind: CLASS_KIND,
        metadata: { namespace: "bench", name: "spire-ctb" },
        spec: {
          refs: [{ apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle", name: BUNDLE }],
        },
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
      env,
    });
    const ctx = (pod: string, os = "debian", className = "spire-ca") =>
      [
        "csi.storage.k8s.io/ephemeral=true",
        `csi.storage.k8s.io/pod.name=${pod}`,
        "csi.storage.k8s.io/pod.namespace=bench",
        `${CLASSES_ATTRIBUTE}=${className}`,
        `os=${os}`,
      ].join(",");
    const roots = values["base-roots"] === "none"
      ? "stores hold the referenced CA only (--base-roots=none)"
      : `--base-roots=${values["base-roots"]}`;
    await delay(2000);
    console.log(benchLine({
      id: "mem.driver.idle",
      section: MEMORY,
      label: `CSI driver idle (no volumes${flagsNote})`,
      unit: "MB",
      value: readRss(driver.process.pid).rssMB,
      baseline: await bareDenoRssMB(),
      baselineLabel: "bare Deno process, idle",
      target: { max: 100, text: "≤ 100 MB resident idle" },
    }));

    // --- NodePublishVolume latency ---
    // Production volumes are tmpfs mounts; one tmpfs under all plain-dir volumes keeps the medium
    // the same without mounting 1,000 of them.
    const fast = join(dir, "fast");
    await Deno.mkdir(fast);
    const onTmpfs = (await runCommand(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", fast]))
      .code === 0;
    console.log(`volumes on ${onTmpfs ? "tmpfs" : "the temp directory's disk (mount failed)"}`);
    for (const family of (values.families as string).split(",")) {
      const pubDir = join(fast, "publish", family);
      const pub = await runCommand([
        toolPath("csi-churn"),
        `-endpoint=${driver.endpoint}`,
        `-publish=${values.publishes}`,
        `-target-dir=${pubDir}`,
        `-vol-context=${ctx(`pub-${family}`, family)}`,
      ], { check: true });
      const p = JSON.parse(pub.stdout);
      console.log(
        `NodePublishVolume ${family} (${p.count} new volumes): p50 ${fmt(p.p50Ms)}, p99 ${
          fmt(p.p99Ms)
        }; baseline NodeGetCapabilities p50 ${fmt(p.baselineP50Ms)}, p99 ${
          fmt(p.baselineP99Ms)
        }; target p99 <= 50 ms: ${p.p99Ms <= 50 ? "met" : "MISSED"}`,
      );
      const section = `NodePublishVolume through grpc-go (csi-churn), ${p.count} new volumes ` +
        `per OS family, ${roots}`;
      for (const q of ["p50", "p99"] as const) {
        console.log(benchLine({
          id: `publish.${family}.${q}`,
          section,
          label: `${family} ${q}`,
          unit: "ms",
          value: q === "p50" ? p.p50Ms : p.p99Ms,
          baseline: q === "p50" ? p.baselineP50Ms : p.baselineP99Ms,
          baselineLabel: `NodeGetCapabilities ${q}, same connection`,
          target: q === "p99" ? { max: 50, text: "publish p99 ≤ 50 ms" } : undefined,
        }));
      }
      // Drop those volumes again so they do not count in the swap sizes.
      await unpublishAll(driver.endpoint, pubDir, p.count);
    }

    // --- Source change to swap latency ---
    let caIndex = 0;
    const custom = kube.kubeConfig.makeApiClient(CustomObjectsApi);
    /** What a round changes: the Secret (class spire-ca) or the ClusterTrustBundle (spire-ctb). */
    const SOURCES = {
      secret: {
        noun: "Secret",
        className: "spire-ca",
        volumeIds: "bench-",
        watchPath: "/api/v1/namespaces/bench/secrets",
        watchName: "ca",
        change: (pem: string) =>
          core.replaceNamespacedSecret({
            namespace: "bench",
            name: "ca",
            body: { metadata: { namespace: "bench", name: "ca" }, data: { "ca.crt": btoa(pem) } },
          }),
      },
      ctb: {
        noun: "ClusterTrustBundle",
        className: "spire-ctb",
        volumeIds: "ctb-",
        watchPath: "/apis/certificates.k8s.io/v1/clustertrustbundles",
        watchName: BUNDLE,
        change: (pem: string) =>
          custom.patchClusterCustomObject({
            group: "certificates.k8s.io",
            version: "v1",
            plural: "clustertrustbundles",
            name: BUNDLE,
            body: { spec: { trustBundle: pem } },
          }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)),
      },
    };
    /**
     * Publishes up to each size under `volRoot` and times `rounds` source changes per size;
     * `measure` is called after each size is published and after its swaps.
     */
    const swapPhase = async (
      drv: DriverProcess,
      sizes: number[],
      volRoot: string,
      roots: string,
      idPrefix: string,
      measure?: (size: number, stage: "published" | "swapped") => Promise<void>,
      source: keyof typeof SOURCES = "secret",
    ): Promise<number> => {
      const src = SOURCES[source];
      let published = 0;
      await Deno.mkdir(volRoot, { recursive: true });
      for (const size of sizes) {
        if (size > published) {
          // Publishes bench-0..bench-(size-1): the ones that exist are republished (no-ops).
          const out = await runCommand([
            toolPath("csi-churn"),
            `-endpoint=${drv.endpoint}`,
            `-publish=${size}`,
            `-target-dir=${volRoot}`,
            `-vol-context=${ctx("swap", "debian", src.className)}`,
            `-id-prefix=${src.volumeIds}`,
          ], { check: true });
          JSON.parse(out.stdout);
          published = size;
        }
        await measure?.(size, "published");
        const swapMs: number[] = [];
        const baseMs: number[] = [];
        for (let r = 0; r < rounds; r++) {
          caIndex = (caIndex + 1) % cas.length;
          const seen = new Map<string, number>();
          let baseAt = 0;
          const watch = new Watch(kube.kubeConfig);
          let t0 = 0;
          const abort = await watch.watch(
            src.watchPath,
            { fieldSelector: `metadata.name=${src.watchName}` },
            (phase) => {
              if (phase === "MODIFIED" && t0 && !baseAt) baseAt = Date.now();
            },
            () => {},
          );
          await delay(300);
          // Swap times come from the driver's own "trust store written" log lines (wall clock, ms),
          // so that measuring does not compete with the driver for the CPU.
          const logOffset = (await Deno.stat(drv.process.logPath)).size;
          t0 = Date.now();
          await src.change(cas[caIndex].certPem);
          const deadline = Date.now() + 30_000;
          while (seen.size < size && Date.now() < deadline) {
            await delay(100);
            const file = await Deno.open(drv.process.logPath);
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
          await delay(500);
        }
        const s99 = percentile(swapMs, 0.99);
        const b50 = percentile(baseMs, 0.5);
        const section =
          `${src.noun} change → swapped store (real kube-apiserver, ${rounds} changes per ` +
          `size, ${roots})`;
        for (const q of [0.5, 0.99]) {
          const name = q === 0.5 ? "p50" : "p99";
          console.log(benchLine({
            id: `${idPrefix}.${size}.${name}`,
            section,
            label: `${size} volume(s) ${name}`,
            unit: "ms",
            value: percentile(swapMs, q),
            baseline: percentile(baseMs, q),
            baselineLabel: `${src.noun} watch delivery to a plain watch, ${name}`,
            target: size === 1000 && name === "p99" && idPrefix === "swap"
              ? { max: 1000, text: "swap p99 ≤ 1 s at 1,000 volumes" }
              : size === 110 && name === "p99" && idPrefix === "swap-bundled"
              ? { max: 1000, text: "swap p99 ≤ 1 s at 110 volumes, bundled roots" }
              : size === 100 && name === "p99" && idPrefix === "swap-ctb"
              ? { max: 1000, text: "swap p99 ≤ 1 s at 100 volumes, ClusterTrustBundle" }
              : undefined,
          }));
        }
        console.log(benchLine({
          id: `${idPrefix}.${size}.missed`,
          section,
          label: `${size} volume(s): swaps not seen within 30 s`,
          unit: "volumes",
          value: size * rounds - swapMs.length,
        }));
        console.log(
          `${src.noun} change -> swap, ${size} volume(s), ${rounds} rounds: p50 ${
            fmt(percentile(swapMs, 0.5))
          }, p99 ${fmt(s99)}; baseline watch delivery p50 ${fmt(b50)}; ratio p99/baseline ${
            (s99 / b50).toFixed(1)
          }x` + (size === 1000 ? `; target p99 <= 1 s: ${s99 <= 1000 ? "met" : "MISSED"}` : ""),
        );
        await measure?.(size, "swapped");
      }
      return published;
    };
    const published = await swapPhase(
      driver,
      sizes,
      join(fast, "volumes"),
      roots,
      "swap",
    );
    // The same driver and store contents, the CA coming from a ClusterTrustBundle ref.
    const ctbSizes = (values["ctb-sizes"] as string).split(",").filter((x) => x).map(Number);
    if (ctbSizes.length) {
      await swapPhase(
        driver,
        ctbSizes,
        join(fast, "ctb-volumes"),
        roots,
        "swap-ctb",
        undefined,
        "ctb",
      );
    }

    await delay(2000);
    const rss = readRss(driver.process.pid);
    console.log(benchLine({
      id: "mem.driver.volumes",
      section: MEMORY,
      label: `CSI driver with ${published} volumes, after the swaps (VmRSS${flagsNote})`,
      unit: "MB",
      value: rss.rssMB,
    }));
    console.log(benchLine({
      id: "mem.driver.peak",
      section: MEMORY,
      label: `CSI driver peak over the whole benchmark (VmHWM)`,
      unit: "MB",
      value: rss.hwmMB,
    }));
    // The default configuration: every store also carries the image's public roots (~280 files).
    const bundledSizes = (values["bundled-sizes"] as string).split(",").filter((x) => x)
      .map(Number);
    if (bundledSizes.length) {
      await driver.process.stop();
      driver = undefined;
      const bundledDir = join(dir, "bundled");
      await Deno.mkdir(bundledDir);
      bundled = await startDriverProcess({
        dir: bundledDir,
        kubeconfigPath: kube.kubeconfigPath,
        args: [
          "--plain-dir",
          "--base-roots=bundled",
          `--render-concurrency=${values["render-concurrency"]}`,
        ],
        env,
      });
      const drv = bundled;
      const bundledSection = `${MEMORY}: CSI driver with --base-roots=bundled (the default)`;
      await delay(2000);
      const idleMB = readRss(drv.process.pid).rssMB;
      console.log(benchLine({
        id: "mem.driver.bundled.idle",
        section: bundledSection,
        label: `idle, no volumes yet${flagsNote}`,
        unit: "MB",
        value: idleMB,
        target: { max: 100, text: "≤ 100 MB resident idle" },
      }));
      const volRoot = join(fast, "bundled");
      const count = await swapPhase(
        drv,
        bundledSizes,
        volRoot,
        "every store also holds the bundled public roots (--base-roots=bundled, the default)",
        "swap-bundled",
        async (size, stage) => {
          await delay(2000);
          console.log(benchLine({
            id: `mem.driver.bundled.${size}.${stage}`,
            section: bundledSection,
            label: `${size} volume(s), ${
              stage === "published" ? "just published" : `after ${rounds} Secret change(s)`
            }${flagsNote}`,
            unit: "MB",
            value: readRss(drv.process.pid).rssMB,
            baseline: idleMB,
            baselineLabel: "the same driver idle",
            target: size === 110
              ? { max: 130, text: "≤ 130 MB resident at 110 volumes, bundled roots" }
              : undefined,
          }));
        },
      );
      await unpublishAll(drv.endpoint, volRoot, count);
      await delay(2000);
      console.log(benchLine({
        id: "mem.driver.bundled.unpublished",
        section: bundledSection,
        label: `all ${count} volumes unpublished again${flagsNote}`,
        unit: "MB",
        value: readRss(drv.process.pid).rssMB,
        baseline: idleMB,
        baselineLabel: "the same driver idle",
      }));
      console.log(benchLine({
        id: "mem.driver.bundled.peak",
        section: bundledSection,
        label: `peak over the bundled phase (VmHWM)${flagsNote}`,
        unit: "MB",
        value: readRss(drv.process.pid).hwmMB,
      }));
    }
  } finally {
    await bundled?.process.stop();
    await driver?.process.stop();
    await runCommand(["umount", join(dir, "fast")]);
    await kube.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** `DENO_V8_FLAGS` of the csi-driver container in manifests/csi/daemonset.yaml. */
async function daemonSetV8Flags(): Promise<string> {
  const path = new URL("../manifests/csi/daemonset.yaml", import.meta.url);
  const [daemonSet] = loadAllYaml(await Deno.readTextFile(path)) as {
    spec: {
      template: {
        spec: { containers: { name: string; env?: { name: string; value?: string }[] }[] };
      };
    };
  }[];
  const driver = daemonSet.spec.template.spec.containers.find((c) => c.name === "csi-driver");
  const flags = driver?.env?.find((e) => e.name === "DENO_V8_FLAGS")?.value;
  if (!flags) throw new Error(`${path.pathname}: csi-driver container has no DENO_V8_FLAGS value`);
  return flags;
}

if (import.meta.main) await main();
