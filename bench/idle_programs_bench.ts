/**
 * Idle resident memory of both programs connected to a real kube-apiserver (tests/harness): the
 * CSI driver (`csi/main.ts`, no volumes) and the webhook with its controllers
 * (`webhook/main.ts`: the namespace and bundle controller, the CAProviderClass status writer,
 * serving a localhost SVID). Each runs with an admin kubeconfig, is left 3 s after it turned
 * healthy (driver) or ready (webhook) so its lists and watches are open, and its VmRSS is read;
 * `--runs` times each (default 3), median printed. Then the webhook as its image runs it: the
 * bundle `scripts/build.ts --allow-bundle-fallback` makes, started outside the repository (no
 * `node_modules`, so Deno's npm resolver reads no registry metadata: ~16 MB for hono under
 * `deno run` of the sources) with the Deployment's `DENO_V8_FLAGS`. Target: ≤ 100 MB each.
 *
 * ```sh
 * ./scripts/deno run -A bench/idle_programs_bench.ts [--runs=3]
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
  freePorts,
  startKubeApiServer,
  startProcess,
  startWebhookProcess,
  waitForWebhook,
  writeLocalhostSvid,
} from "../tests/harness/mod.ts";
import { startDriverProcess } from "../tests/harness/driver_process.ts";
import { readWebhookContainer } from "../tests/harness/webhook_manifest.ts";

const ROOT = new URL("..", import.meta.url).pathname;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { runs: { type: "string" } } });
  const runs = Number(values.runs ?? 3);
  const kube = await startKubeApiServer();
  const dir = await Deno.makeTempDir({ prefix: "idle-programs-" });
  const driverMB: number[] = [];
  const webhookMB: number[] = [];
  const bundleMB: number[] = [];
  try {
    for (const file of ["namespaces.yaml", "crds/caproviderclasses.yaml"]) {
      await kube.kubectl(["apply", "-f", join(ROOT, "manifests", file)], { check: true });
    }
    const certDir = join(dir, "certs");
    await Deno.mkdir(certDir);
    await writeLocalhostSvid(await createCa(dir, "ca", "bench-spire-ca"), dir, certDir);
    for (let run = 0; run < runs; run++) {
      const runDir = join(dir, `driver-${run}`);
      await Deno.mkdir(runDir);
      const driver = await startDriverProcess({
        dir: runDir,
        kubeconfigPath: kube.kubeconfigPath,
        args: ["--plain-dir", "--log-level=warn"],
      });
      await delay(3000);
      driverMB.push(driver.rssMB());
      await driver.process.stop();

      const { process: webhook, ...ports } = startWebhookProcess({
        logPath: join(dir, `webhook-${run}.log`),
        args: [`--kubeconfig=${kube.kubeconfigPath}`, `--cert-dir=${certDir}`, "--log-level=warn"],
      });
      await waitForWebhook({ process: webhook, ...ports });
      await delay(3000);
      webhookMB.push(readRss(webhook.pid).rssMB);
      await webhook.stop();
    }
    // What the image runs: the bundle scripts/build.ts makes (offline fallback of deno compile),
    // outside the repository (no node_modules, so no npm resolution at start), with the
    // Deployment's DENO_V8_FLAGS.
    const out = join(dir, "build");
    const build = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "scripts/build.ts",
        "--only",
        "webhook",
        "--allow-bundle-fallback",
        `--out-dir=${out}`,
      ],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!build.success) {
      throw new Error(`scripts/build.ts failed: ${new TextDecoder().decode(build.stderr)}`);
    }
    const { env } = readWebhookContainer();
    for (let run = 0; run < runs; run++) {
      const [port, healthPort] = freePorts(2);
      const webhook = startProcess({
        name: "webhook bundle",
        program: Deno.execPath(),
        args: [
          "run",
          "-A",
          join(out, "spire-cacerts-webhook.js"),
          `--port=${port}`,
          `--health-port=${healthPort}`,
          "--bind-address=127.0.0.1",
          `--kubeconfig=${kube.kubeconfigPath}`,
          `--cert-dir=${certDir}`,
          "--log-level=warn",
        ],
        logPath: join(dir, `bundle-${run}.log`),
        env: { DENO_V8_FLAGS: env.DENO_V8_FLAGS },
        cwd: out,
      });
      await waitForWebhook({
        process: webhook,
        port,
        healthPort,
        health: `http://127.0.0.1:${healthPort}`,
      });
      await delay(3000);
      bundleMB.push(readRss(webhook.pid).rssMB);
      await webhook.stop();
    }
  } finally {
    await kube.stop();
    await Deno.remove(dir, { recursive: true });
  }
  const section = "idle programs against a real kube-apiserver (median VmRSS)";
  console.log(benchLine({
    id: "mem.idle.driver",
    section,
    label: `CSI driver idle, watching nothing (${runs} runs: ${driverMB.map((v) => v.toFixed(1))})`,
    unit: "MB",
    value: median(driverMB),
    target: { max: 100, text: "≤ 100 MB resident idle" },
  }));
  console.log(benchLine({
    id: "mem.idle.webhook_controller",
    section,
    label: `webhook with its controllers idle (${runs} runs: ${
      webhookMB.map((v) => v.toFixed(1))
    })`,
    unit: "MB",
    value: median(webhookMB),
    target: { max: 100, text: "≤ 100 MB resident idle" },
  }));
  console.log(benchLine({
    id: "mem.idle.webhook_bundle",
    section,
    label: `webhook as the image runs it (the built bundle, the Deployment's DENO_V8_FLAGS), ` +
      `with its controllers, idle (${runs} runs: ${bundleMB.map((v) => v.toFixed(1))})`,
    unit: "MB",
    value: median(bundleMB),
    target: { max: 100, text: "≤ 100 MB resident idle" },
  }));
}
