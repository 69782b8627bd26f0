/**
 * Graceful shutdown of the real driver program (csi/main.ts as a child process) on SIGTERM, with a
 * NodePublishVolume in flight. The driver reaches a real kube-apiserver through a {@link TcpGate}
 * that holds its connections: the publish's first lookup of its CAProviderClass is then provably
 * running (the gate holds a connection from the driver) when SIGTERM arrives.
 *
 * - Drained: /healthz turns 503 and a new connection gets no call served while the publish is
 *   still waiting; the gate opens, the publish is answered OK with its store on disk, and the
 *   process exits 0.
 * - Bounded: the gate stays shut; after `--shutdown-timeout` the call is cancelled (the client
 *   sees an error, not a hang) and the process still exits 0.
 */

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadAllYaml } from "@kubernetes/client-node";
import { parseFlags } from "../csi/main.ts";
import { identityService } from "../csi/proto.ts";
import { createCa, type KubeApiServer, needsTools, waitFor } from "./harness/mod.ts";
import { type DriverProcess, startDriverProcess } from "./harness/driver_process.ts";
import { TcpGate } from "./harness/tcp_gate.ts";
import {
  apply,
  caProviderClass,
  coreApi,
  CsiCallError,
  CsiClient,
  publishRequest,
  putSecret,
  setupCluster,
  startScratchApiServer,
} from "./faults/helpers.ts";

/** Writes a copy of the apiserver's kubeconfig whose server is the gate. */
async function gatedKubeconfig(kube: KubeApiServer, gate: TcpGate, path: string): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(kube.kubeconfigPath));
  config.clusters[0].cluster.server = `https://127.0.0.1:${gate.port}`;
  await Deno.writeTextFile(path, JSON.stringify(config));
}

async function healthStatus(driver: DriverProcess): Promise<number> {
  const res = await fetch(`${driver.healthUrl}/healthz`);
  await res.body?.cancel();
  return res.status;
}

/** GetPluginInfo on a new connection; resolves to the error code, or "ok". */
function freshIdentityCall(endpoint: string): Promise<string> {
  const Client = grpc.makeGenericClientConstructor(identityService, "Identity");
  const client = new Client(endpoint, grpc.credentials.createInsecure());
  const call = (client as unknown as {
    GetPluginInfo(
      req: object,
      options: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null) => void,
    ): void;
  }).GetPluginInfo.bind(client);
  return new Promise<string>((resolve) =>
    call({}, { deadline: Date.now() + 3_000 }, (e) => resolve(e ? grpc.status[e.code] : "ok"))
  ).finally(() => client.close());
}

async function withGatedDriver(
  name: string,
  args: string[],
  fn: (ctx: { driver: DriverProcess; gate: TcpGate; dir: string }) => Promise<void>,
): Promise<void> {
  const scratch = await startScratchApiServer(`cacerts-csi-shutdown-${name}-`);
  const gate = TcpGate.start({
    hostname: "127.0.0.1",
    port: Number(new URL(scratch.kube.url).port),
  });
  let driver: DriverProcess | undefined;
  try {
    await setupCluster(scratch.kube);
    const ca = await createCa(scratch.dir, "ca", "Shutdown Test CA");
    await putSecret(coreApi(scratch.kube.kubeConfig), "ca", { "ca.crt": ca.certPem });
    await apply(scratch.kube, caProviderClass("spire-ca", { kind: "Secret", name: "ca" }));
    const kubeconfig = join(scratch.dir, "gated.kubeconfig");
    await gatedKubeconfig(scratch.kube, gate, kubeconfig);
    driver = await startDriverProcess({
      dir: scratch.dir,
      kubeconfigPath: kubeconfig,
      args: ["--plain-dir", "--base-roots=none", ...args],
    });
    await fn({ driver, gate, dir: scratch.dir });
  } finally {
    gate.close();
    await driver?.process.stop();
    await scratch.cleanup();
  }
}

Deno.test({
  name: "SIGTERM: /healthz fails first, the publish in flight is answered, then exit 0",
  ...needsTools(["kube-apiserver", "etcd", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withGatedDriver("drained", [], async ({ driver, gate, dir }) => {
      assert.equal(gate.accepted, 0, "an idle driver with no volumes makes no API call");
      const target = join(dir, "targets", "v1");
      await Deno.mkdir(target, { recursive: true });
      const client = new CsiClient(driver.endpoint);
      try {
        const publish = client.publish(publishRequest("vol-1", target, "pod-1", "spire-ca"))
          .then(() => "ok", (e: CsiCallError) => `${grpc.status[e.code]}: ${e.details}`);
        await waitFor("the publish's API request held at the gate", () => gate.held > 0, {
          detail: () => driver.process.logTail(),
        });
        assert.equal(await healthStatus(driver), 200);
        Deno.kill(driver.process.pid, "SIGTERM");
        await waitFor("/healthz 503 after SIGTERM", async () =>
          (await healthStatus(driver)) === 503, {
          detail: () =>
            driver.process.logTail(),
        });
        assert.equal(driver.process.exitCode, null, "still draining the held publish");
        assert.notEqual(
          await freshIdentityCall(driver.endpoint),
          "ok",
          "a new connection is not served while draining",
        );
        gate.open();
        assert.equal(await publish, "ok", driver.process.logTail());
        assert.ok((await Deno.lstat(join(target, "..data"))).isSymlink, "the store was written");
      } finally {
        client.close();
      }
      await driver.process.stop(30_000);
      assert.equal(driver.process.exitCode, 0, driver.process.logTail());
      const log = await Deno.readTextFile(driver.process.logPath);
      assert.match(log, /"msg":"CSI calls drained".*"inFlight":1/);
      assert.ok(
        log.indexOf('"msg":"stopping"') < log.indexOf('"msg":"CSI calls drained"') &&
          log.indexOf('"msg":"CSI calls drained"') < log.indexOf('"msg":"stopped"'),
        "stopping, drained, stopped in that order",
      );
    }),
});

Deno.test({
  name: "SIGTERM: a call still running after --shutdown-timeout is cancelled and the exit is 0",
  ...needsTools(["kube-apiserver", "etcd", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withGatedDriver("bounded", ["--shutdown-timeout=1s"], async ({ driver, gate, dir }) => {
      const target = join(dir, "targets", "v1");
      await Deno.mkdir(target, { recursive: true });
      const client = new CsiClient(driver.endpoint);
      try {
        const publish = client.publish(publishRequest("vol-1", target, "pod-1", "spire-ca"))
          .then(() => "ok", (e: CsiCallError) => grpc.status[e.code]);
        await waitFor("the publish's API request held at the gate", () => gate.held > 0, {
          detail: () => driver.process.logTail(),
        });
        Deno.kill(driver.process.pid, "SIGTERM");
        const outcome = await publish;
        assert.notEqual(outcome, "ok", "the held publish cannot have succeeded");
        await driver.process.stop(30_000);
        assert.equal(driver.process.exitCode, 0, driver.process.logTail());
        const log = await Deno.readTextFile(driver.process.logPath);
        assert.match(
          log,
          /"msg":"CSI calls cancelled after the shutdown timeout".*"inFlight":1.*"timeoutMs":1000/,
        );
        assert.equal(gate.held, 1, "the gate never let the lookup through");
      } finally {
        client.close();
      }
    }),
});

Deno.test("csi shutdown: the DaemonSet's grace period outlasts the drain it configures", async () => {
  const text = await Deno.readTextFile(new URL("../manifests/csi/daemonset.yaml", import.meta.url));
  const [daemonSet] = loadAllYaml(text) as {
    spec: {
      template: {
        spec: {
          terminationGracePeriodSeconds?: number;
          containers: { name: string; args?: string[] }[];
        };
      };
    };
  }[];
  const pod = daemonSet.spec.template.spec;
  const driver = pod.containers.find((c) => c.name === "csi-driver");
  assert.ok(driver, "the DaemonSet has a csi-driver container");
  const flags = parseFlags(driver.args ?? []);
  // Kubernetes' default grace period is 30 s; what the manifest sets must cover the gRPC drain
  // plus at least 5 s for the watches to stop and the process to exit.
  const graceMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
  assert.ok(
    graceMs >= flags.shutdownTimeoutMs + 5_000,
    `terminationGracePeriodSeconds ${graceMs / 1000} s < --shutdown-timeout ` +
      `${flags.shutdownTimeoutMs} ms + 5 s`,
  );
});
