import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { join } from "node:path";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { createApp } from "../webhook/app.ts";
import { planMutation } from "../webhook/mutate.ts";
import {
  createCa,
  issueCertificate,
  needsTools,
  runSpiffeHelper,
  servedSerial,
  startKubeApiServer,
  startSpire,
  startWebhookProcess,
  waitFor,
  waitForWebhook,
} from "./harness/mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CRD_PATH = join(ROOT, "tests/harness/fixtures/caproviderclass_crd.yaml");
const LABEL = { [INJECT_LABEL]: "true" };
const config = { driverName: DRIVER_NAME, className: "spire-ca" };

async function httpGet(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url);
  return { status: response.status, text: await response.text() };
}

function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

Deno.test({
  name: "webhook on the real apiserver with a SPIRE SVID rotating every ~5 s",
  ...needsTools([
    "etcd",
    "kube-apiserver",
    "kubectl",
    "spire-server",
    "spire-agent",
    "spiffe-helper",
  ]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const kube = await startKubeApiServer();
    const spire = await startSpire({ trustDomain: "example.org" });
    const work = await Deno.makeTempDir({ prefix: "webhook-e2e-" });
    const stops: (() => Promise<void>)[] = [];
    try {
      await spire.createEntry({
        spiffeId: "/workload/webhook",
        dnsNames: ["localhost"],
        x509SvidTtlSeconds: 10,
      });
      const certDir = join(work, "certs");
      const helper = await runSpiffeHelper({ agentSocketPath: spire.agentSocketPath, certDir });
      stops.push(() => helper.stop());
      await helper.waitForFiles();

      const webhook = startWebhookProcess({
        logPath: join(work, "webhook.log"),
        args: [`--cert-dir=${certDir}`, `--kubeconfig=${kube.kubeconfigPath}`],
      });
      stops.push(() => webhook.process.stop());
      const { port, health } = webhook;
      await waitForWebhook(webhook);

      await kube.kubectl(["apply", "-f", CRD_PATH], { check: true });
      const caBundle = btoa(await spire.bundlePem());
      const configuration = {
        apiVersion: "admissionregistration.k8s.io/v1",
        kind: "MutatingWebhookConfiguration",
        metadata: { name: "spire-cacerts-webhook" },
        webhooks: [{
          name: "trust-store.cacerts.csi.cert-manager.io",
          admissionReviewVersions: ["v1"],
          clientConfig: { url: `https://localhost:${port}/mutate`, caBundle },
          rules: [{
            apiGroups: [""],
            apiVersions: ["v1"],
            operations: ["CREATE"],
            resources: ["pods"],
          }],
          objectSelector: { matchLabels: LABEL },
          failurePolicy: "Fail",
          sideEffects: "None",
          reinvocationPolicy: "IfNeeded",
          timeoutSeconds: 5,
        }],
      };
      await kube.kubectl(["apply", "-f", "-"], {
        stdin: JSON.stringify(configuration),
        check: true,
      });

      const core = kube.kubeConfig.makeApiClient(CoreV1Api);
      let serial = 0;
      const createPod = (labels: Record<string, string>, extra: Partial<V1Pod["spec"]> = {}) =>
        core.createNamespacedPod({
          namespace: "default",
          body: {
            metadata: { name: `p-${++serial}`, labels },
            spec: { containers: [{ name: "app", image: "example.invalid/app:1" }], ...extra },
          },
        });
      await waitFor("webhook configuration active", async () => {
        const pod = await createPod(LABEL);
        return (pod.spec?.volumes ?? []).some((v) => v.name === "spire-cacerts");
      }, { timeoutMs: 30_000, intervalMs: 200 });

      await t.step("a labelled pod is stored with the volume and mounts", async () => {
        const pod = await createPod(LABEL, {
          initContainers: [{ name: "init", image: "example.invalid/init:1" }],
        });
        const volume = pod.spec!.volumes!.find((v) => v.name === "spire-cacerts")!;
        assert.equal(volume.csi?.driver, "cacerts.csi.cert-manager.io");
        assert.equal(volume.csi?.readOnly, true);
        assert.deepEqual({ ...volume.csi?.volumeAttributes }, {
          os: "debian",
          caProviderClasses: "spire-ca",
        });
        for (const c of [...pod.spec!.initContainers!, ...pod.spec!.containers]) {
          const mount = c.volumeMounts!.find((m) => m.name === "spire-cacerts");
          assert.deepEqual(
            { mountPath: mount?.mountPath, readOnly: mount?.readOnly },
            { mountPath: "/etc/ssl/certs", readOnly: true },
            c.name,
          );
        }
        // A second mutation of the stored pod (a reinvocation) changes nothing, silently.
        assert.deepEqual(planMutation(pod, config), { patch: [], warnings: [] });
        const response = await createApp(config).request("/mutate", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            apiVersion: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            request: {
              uid: "again",
              kind: { group: "", version: "v1", kind: "Pod" },
              operation: "CREATE",
              object: pod,
            },
          }),
        });
        const body = await response.json();
        assert.equal(body.response.allowed, true);
        assert.equal(body.response.patch, undefined);
      });

      await t.step("a server-side dry run shows the mutation and stores nothing", async () => {
        const pod = await core.createNamespacedPod({
          namespace: "default",
          dryRun: "All",
          body: {
            metadata: { name: "dry-run", labels: LABEL },
            spec: { containers: [{ name: "app", image: "example.invalid/app:1" }] },
          },
        });
        assert.ok(pod.spec!.volumes!.some((v) => v.name === "spire-cacerts"));
        assert.equal(pod.spec!.containers[0].volumeMounts?.[0]?.mountPath, "/etc/ssl/certs");
        await assert.rejects(core.readNamespacedPod({ namespace: "default", name: "dry-run" }));
      });

      await t.step(
        "reinvoked after another webhook adds a sidecar, it mounts the store there too",
        async () => {
          // A second mutating webhook, ordered after ours by name, adds a container; the API server
          // then reinvokes ours (reinvocationPolicy: IfNeeded) on the changed pod.
          const pki = join(work, "sidecar-pki");
          await Deno.mkdir(pki);
          const ca = await createCa(pki, "ca", "sidecar-webhook-ca");
          const leaf = await issueCertificate(ca, pki, "leaf", {
            commonName: "localhost",
            dnsNames: ["localhost"],
            usage: "server",
          });
          const sidecar = { name: "sidecar", image: "example.invalid/sidecar:1" };
          const server = Deno.serve({
            hostname: "127.0.0.1",
            port: 0,
            cert: leaf.certPem,
            key: leaf.keyPem,
            onListen: () => {},
          }, async (request) => {
            const review = await request.json();
            const patch = [{ op: "add", path: "/spec/containers/-", value: sidecar }];
            return Response.json({
              apiVersion: "admission.k8s.io/v1",
              kind: "AdmissionReview",
              response: {
                uid: review.request.uid,
                allowed: true,
                patchType: "JSONPatch",
                patch: btoa(JSON.stringify(patch)),
              },
            });
          });
          const name = "zz-sidecar-injector";
          try {
            await kube.kubectl(["apply", "-f", "-"], {
              stdin: JSON.stringify({
                apiVersion: "admissionregistration.k8s.io/v1",
                kind: "MutatingWebhookConfiguration",
                metadata: { name },
                webhooks: [{
                  name: "sidecar.example.invalid",
                  admissionReviewVersions: ["v1"],
                  clientConfig: {
                    url: `https://localhost:${server.addr.port}/mutate`,
                    caBundle: btoa(ca.certPem),
                  },
                  rules: [{
                    apiGroups: [""],
                    apiVersions: ["v1"],
                    operations: ["CREATE"],
                    resources: ["pods"],
                  }],
                  objectSelector: { matchLabels: { sidecar: "true" } },
                  failurePolicy: "Fail",
                  sideEffects: "None",
                  timeoutSeconds: 5,
                }],
              }),
              check: true,
            });
            let pod: V1Pod | undefined;
            await waitFor("sidecar webhook active", async () => {
              pod = await createPod({ ...LABEL, sidecar: "true" });
              return pod.spec!.containers.length === 2;
            }, { timeoutMs: 30_000, intervalMs: 200 });
            const mounts = Object.fromEntries(
              pod!.spec!.containers.map((c) => [
                c.name,
                (c.volumeMounts ?? []).filter((m) => m.name === "spire-cacerts").map((m) =>
                  m.mountPath
                ),
              ]),
            );
            assert.deepEqual(mounts, { app: ["/etc/ssl/certs"], sidecar: ["/etc/ssl/certs"] });
            assert.equal(pod!.spec!.volumes!.filter((v) => v.name === "spire-cacerts").length, 1);
          } finally {
            await kube.kubectl(["delete", "mutatingwebhookconfiguration", name]).catch(() => {});
            await server.shutdown();
          }
        },
      );

      await t.step("an unlabelled pod is stored unchanged", async () => {
        const pod = await createPod({ app: "plain" });
        assert.equal(pod.spec!.volumes ?? undefined, undefined);
        assert.equal(pod.spec!.containers[0].volumeMounts ?? undefined, undefined);
      });

      await t.step("a pod with a bad annotation is refused with the reason", async () => {
        await assert.rejects(
          core.createNamespacedPod({
            namespace: "default",
            body: {
              metadata: {
                name: "bad-annotation",
                labels: LABEL,
                annotations: { "cacerts.spiffe.io/os": "windows" },
              },
              spec: { containers: [{ name: "app", image: "example.invalid/app:1" }] },
            },
          }),
          /denied the request: annotation cacerts.spiffe.io\/os: unknown OS family/,
        );
      });

      await t.step("pods keep being admitted across ≥ 5 SVID rotations", async () => {
        const before = metric(
          (await httpGet(`${health}/metrics`)).text,
          "spire_cacerts_webhook_svid_updates_total",
        );
        let created = 0;
        const failures: string[] = [];
        const serials = new Set<string>();
        const bundle = await spire.bundlePem();
        const started = Date.now();
        for (;;) {
          const text = (await httpGet(`${health}/metrics`)).text;
          const rotations = metric(text, "spire_cacerts_webhook_svid_updates_total") - before;
          if (rotations >= 5) {
            console.log(
              `${created} pods admitted across ${rotations} rotations in ${
                ((Date.now() - started) / 1000).toFixed(1)
              } s, ${serials.size} serving certificates seen, ${failures.length} failures`,
            );
            break;
          }
          if (Date.now() - started > 90_000) throw new Error(`only ${rotations} rotations in 90 s`);
          try {
            serials.add(await servedSerial(port, bundle));
          } catch (error) {
            failures.push(`new handshake: ${error}`);
          }
          for (let i = 0; i < 10; i++) {
            try {
              const pod = await createPod(LABEL);
              if (!pod.spec?.volumes?.some((v) => v.name === "spire-cacerts")) {
                failures.push(`${pod.metadata?.name} stored without the volume`);
              }
              created++;
            } catch (error) {
              failures.push(String(error));
            }
          }
        }
        assert.deepEqual(failures, []);
        assert.ok(created >= 50, `${created} pods`);
        // New handshakes saw the rotated certificates, not only the first one.
        assert.ok(serials.size >= 5, `${serials.size} distinct serving certificates`);
        const text = (await httpGet(`${health}/metrics`)).text;
        assert.doesNotMatch(text, /admissions_total\{result="error"\}/);
      });
    } finally {
      for (const stop of stops.reverse()) await stop().catch(() => {});
      await spire.stop();
      await kube.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
