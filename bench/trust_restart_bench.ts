/**
 * The trust-restart controller at cluster scale: `webhook/main.ts` with its controllers against a
 * real kube-apiserver holding `--workloads` Deployments (default 2,000) annotated
 * `cacerts.spiffe.io/restart-on-trust-change` in one namespace, all using the managed class, whose
 * CA set comes from SPIRE's bundle ConfigMap through the published ClusterTrustBundle.
 *
 * Measured in one run:
 * The webhook runs with the Deployment's `DENO_V8_FLAGS` (its heap sized from its memory limit).
 *
 * - VmRSS of the webhook idle with no workload (baseline), and 5 s after it recorded the baseline
 *   CA set of every Deployment (its informers then hold a trimmed copy of each): target ≤ 1.3×;
 * - time from start until every Deployment has its baseline (one merge patch each);
 * - time from a CA added to the bundle until every Deployment was rolled out (one merge patch
 *   and one Event each), with `--trust-restart-settle=1s`, minus that second;
 * - VmHWM of the webhook over the whole run.
 *
 * ```sh
 * ./scripts/deno run -A bench/trust_restart_bench.ts [--workloads=2000]
 * ```
 *
 * Prints `BENCH {json}` lines (bench/report.ts).
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { setTimeout as delay } from "node:timers/promises";
import { benchLine } from "./report.ts";
import { readRss } from "./proc.ts";
import {
  createCa,
  type KubeApiServer,
  startKubeApiServer,
  startWebhookProcess,
  waitFor,
  waitForWebhook,
  writeLocalhostSvid,
} from "../tests/harness/mod.ts";
import { readWebhookContainer } from "../tests/harness/webhook_manifest.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const NS = "fleet";
const SETTLE_S = 1;

function deployments(n: number): string {
  const labels = (i: number) => ({ app: `app-${i}` });
  return JSON.stringify({
    apiVersion: "v1",
    kind: "List",
    items: Array.from({ length: n }, (_, i) => ({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: {
        namespace: NS,
        name: `app-${i}`,
        annotations: { "cacerts.spiffe.io/restart-on-trust-change": "true" },
      },
      spec: {
        selector: { matchLabels: labels(i) },
        template: {
          metadata: {
            labels: { ...labels(i), "spiffe.io/spire-managed-identity": "true" },
          },
          spec: { containers: [{ name: "app", image: "registry.invalid/app:1" }] },
        },
      },
    })),
  });
}

/** How many Deployments of the namespace carry `annotation` (metadata or template). */
async function counted(kube: KubeApiServer, path: string): Promise<number> {
  const out = await kube.kubectl(["get", "deployments", "-n", NS, "-o", `jsonpath=${path}`], {
    check: true,
  });
  return out.stdout.split(/\s+/).filter(Boolean).length;
}

async function setBundle(kube: KubeApiServer, pem: string): Promise<void> {
  await kube.kubectl(["apply", "-f", "-"], {
    stdin: JSON.stringify({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { namespace: "spire", name: "spire-bundle" },
      data: { "bundle.crt": pem },
    }),
    check: true,
  });
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { workloads: { type: "string" } } });
  const n = Number(values.workloads ?? 2000);
  const kube = await startKubeApiServer();
  const dir = await Deno.makeTempDir({ prefix: "trust-restart-bench-" });
  let idleMB = 0;
  let recordedMB = 0;
  let peakMB = 0;
  let recordS = 0;
  let rolloutS = 0;
  try {
    for (const file of ["namespaces.yaml", "crds/caproviderclasses.yaml"]) {
      await kube.kubectl(["apply", "-f", join(ROOT, "manifests", file)], { check: true });
    }
    await kube.kubectl(["create", "namespace", NS], { check: true });
    const [spire, next] = await Promise.all([
      createCa(dir, "spire", "bench SPIRE CA"),
      createCa(dir, "next", "bench next SPIRE CA"),
    ]);
    await setBundle(kube, spire.certPem);
    const certDir = join(dir, "certs");
    await Deno.mkdir(certDir);
    await writeLocalhostSvid(spire, dir, certDir);
    // The Deployment's heap flags: the V8 heap sized from its memory limit, as it runs there.
    const { env } = readWebhookContainer();
    const start = (name: string) => {
      const w = startWebhookProcess({
        logPath: join(dir, `${name}.log`),
        env: { DENO_V8_FLAGS: env.DENO_V8_FLAGS },
        args: [
          `--kubeconfig=${kube.kubeconfigPath}`,
          `--cert-dir=${certDir}`,
          "--log-level=warn",
          `--trust-restart-settle=${SETTLE_S}s`,
          "--trust-restart-interval=0s",
        ],
      });
      return w;
    };

    // Baseline: the same program, idle, with no workload in the cluster.
    const idle = start("idle");
    await waitForWebhook(idle);
    await delay(5_000);
    idleMB = readRss(idle.process.pid).rssMB;
    await idle.process.stop();

    await kube.kubectl(["apply", "-f", "-"], { stdin: deployments(n), check: true });
    const webhook = start("webhook");
    const t0 = Date.now();
    await waitForWebhook(webhook);
    const TRUSTED = String
      .raw`{.items[*].metadata.annotations.cacerts\.spiffe\.io/trusted-fingerprints}`;
    await waitFor(`${n} baselines`, async () => (await counted(kube, TRUSTED)) === n, {
      timeoutMs: 600_000,
      intervalMs: 500,
      detail: () => webhook.process.logTail(10),
    });
    recordS = (Date.now() - t0) / 1000;
    await delay(5_000);
    recordedMB = readRss(webhook.process.pid).rssMB;

    await setBundle(kube, spire.certPem + next.certPem);
    const t1 = Date.now();
    const RESTARTED = String
      .raw`{.items[*].spec.template.metadata.annotations.cacerts\.spiffe\.io/trust-restarted-at}`;
    await waitFor(`${n} rollouts`, async () => (await counted(kube, RESTARTED)) === n, {
      timeoutMs: 600_000,
      intervalMs: 500,
      detail: () => webhook.process.logTail(10),
    });
    rolloutS = (Date.now() - t1) / 1000 - SETTLE_S;
    peakMB = readRss(webhook.process.pid).hwmMB;
    webhook.process.assertRunning();
    await webhook.process.stop();
  } finally {
    await kube.stop();
    await Deno.remove(dir, { recursive: true });
  }
  const section = `trust restart: ${n} annotated Deployments (real kube-apiserver)`;
  console.log(benchLine({
    id: "trust_restart.rss",
    section,
    label: `webhook VmRSS with ${n} Deployments cached and recorded`,
    unit: "MB",
    value: recordedMB,
    baseline: idleMB,
    baselineLabel: "the same program idle, no workloads",
    target: { max: 1.3 * idleMB, text: "≤ 1.3× idle with 2,000 Deployments" },
  }));
  console.log(benchLine({
    id: "trust_restart.peak",
    section,
    label: "webhook VmHWM over the run (start, baselines, rollouts)",
    unit: "MB",
    value: peakMB,
    baseline: idleMB,
    baselineLabel: "idle VmRSS",
  }));
  console.log(benchLine({
    id: "trust_restart.record_s",
    section,
    label: `start to every Deployment's baseline recorded (${n} patches)`,
    unit: "s",
    value: recordS,
  }));
  console.log(benchLine({
    id: "trust_restart.rollout_s",
    section,
    label: `CA added to SPIRE's bundle to every Deployment rolled out (${n} patches + Events), ` +
      `settle delay excluded`,
    unit: "s",
    value: rolloutS,
  }));
}
