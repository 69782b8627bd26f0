import assert from "node:assert/strict";
import {
  CLASS_API_VERSION,
  CLASS_GROUP,
  CLASS_KIND,
  CLASS_PLURAL,
  CLASS_VERSION,
} from "../../api/mod.ts";
import { createServer, type Server } from "node:https";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { createCa, issueCertificate, needsTools, startKubeApiServer, waitFor } from "./mod.ts";

const CRD_PATH = new URL("./fixtures/caproviderclass_crd.yaml", import.meta.url).pathname;

interface AdmissionReviewRequest {
  request: {
    uid: string;
    name?: string;
    namespace?: string;
    object: { metadata: { name?: string } };
  };
}

/** An HTTPS admission webhook on loopback that labels every pod and records the names it saw. */
async function startWebhook(dir: string) {
  const ca = await createCa(dir, "webhook-ca", "webhook-test-ca");
  const cert = await issueCertificate(ca, dir, "webhook", {
    commonName: "127.0.0.1",
    ipAddresses: ["127.0.0.1"],
    usage: "server",
  });
  const seen: string[] = [];
  const server: Server = createServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    req.on("end", () => {
      const review = JSON.parse(
        new TextDecoder().decode(Buffer.concat(chunks)),
      ) as AdmissionReviewRequest;
      const name = review.request.object.metadata.name ?? review.request.name ?? "";
      seen.push(name);
      const patch = [{ op: "add", path: "/metadata/labels", value: { "webhook-saw": "yes" } }];
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: {
          uid: review.request.uid,
          allowed: true,
          patchType: "JSONPatch",
          patch: btoa(JSON.stringify(patch)),
        },
      }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}/mutate`,
    caPem: ca.certPem,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function pod(name: string) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default" },
    spec: { containers: [{ name: "main", image: "registry.invalid/none:1" }] },
  };
}

Deno.test({
  name: "kube-apiserver: CRDs, objects, both users, a url webhook, restart",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const started = Date.now();
    const kube = await startKubeApiServer();
    console.log(`apiserver ready in ${Date.now() - started} ms`);
    try {
      await t.step("/version reports v1.37.2", async () => {
        const out = await kube.kubectl(["version", "-o", "json"], { check: true });
        const version = JSON.parse(out.stdout) as {
          serverVersion: { gitVersion: string };
          clientVersion: { gitVersion: string };
        };
        assert.equal(version.serverVersion.gitVersion, "v1.37.2");
        assert.equal(version.clientVersion.gitVersion, "v1.37.2");
      });

      await t.step("token user and client-certificate user are both admins", async () => {
        for (const context of ["admin", "admin-cert"]) {
          const out = await kube.kubectl(["--context", context, "auth", "whoami", "-o", "json"], {
            check: true,
          });
          const review = JSON.parse(out.stdout) as { status: { userInfo: { groups: string[] } } };
          assert.ok(review.status.userInfo.groups.includes("system:masters"), out.stdout);
        }
      });

      await t.step("client-node works with both users", async () => {
        for (const context of ["admin", "admin-cert"]) {
          const config = new KubeConfig();
          config.loadFromFile(kube.kubeconfigPath);
          config.setCurrentContext(context);
          const list = await config.makeApiClient(CoreV1Api).listNamespace();
          assert.ok(list.items.some((ns) => ns.metadata?.name === "default"), context);
        }
      });

      await t.step("CAProviderClass CRD and an object via kubectl", async () => {
        await kube.kubectl(["apply", "-f", CRD_PATH], { check: true });
        await kube.kubectl([
          "wait",
          "--for=condition=Established",
          "--timeout=60s",
          `crd/${CLASS_PLURAL}.${CLASS_GROUP}`,
        ], { check: true });
        const manifest = JSON.stringify({
          apiVersion: CLASS_API_VERSION,
          kind: CLASS_KIND,
          metadata: { name: "by-kubectl", namespace: "default" },
          spec: {
            refs: [{ apiGroup: "", kind: "Secret", namespace: "spire", name: "b", key: "ca.crt" }],
          },
        });
        // Discovery of a just-established CRD can lag a moment in kubectl's cache.
        await waitFor("kubectl apply of a CAProviderClass", async () => {
          const out = await kube.kubectl(["apply", "-f", "-"], { stdin: manifest });
          if (out.code !== 0) throw new Error(out.stderr);
          return true;
        }, { timeoutMs: 30_000, intervalMs: 500 });
        const got = await kube.kubectl(
          ["get", "caproviderclass", "by-kubectl", "-n", "default", "-o", "json"],
          { check: true },
        );
        const object = JSON.parse(got.stdout) as { spec: { refs: { key: string }[] } };
        assert.equal(object.spec.refs[0].key, "ca.crt");
        // The schema is enforced: a ref without a name is rejected.
        const bad = await kube.kubectl(["apply", "-f", "-"], {
          stdin: manifest.replace('"name":"b",', "").replace("by-kubectl", "bad-one"),
        });
        assert.notEqual(bad.code, 0);
        assert.match(bad.stderr, /name/);
      });

      await t.step("CAProviderClass object via client-node", async () => {
        const api = kube.kubeConfig.makeApiClient(CustomObjectsApi);
        await api.createNamespacedCustomObject({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace: "default",
          plural: CLASS_PLURAL,
          body: {
            apiVersion: CLASS_API_VERSION,
            kind: CLASS_KIND,
            metadata: { name: "by-client-node" },
            spec: { refs: [{ kind: "ConfigMap", namespace: "spire", name: "spire-bundle" }] },
          },
        });
        const list = await api.listNamespacedCustomObject({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace: "default",
          plural: CLASS_PLURAL,
        }) as { items: { metadata: { name: string } }[] };
        assert.deepEqual(list.items.map((item) => item.metadata.name).sort(), [
          "by-client-node",
          "by-kubectl",
        ]);
      });

      await t.step("a url webhook with a caBundle is called for pod creation", async () => {
        const webhook = await startWebhook(join(kube.dir, "pki"));
        try {
          await kube.kubectl(["apply", "-f", "-"], {
            check: true,
            stdin: JSON.stringify({
              apiVersion: "admissionregistration.k8s.io/v1",
              kind: "MutatingWebhookConfiguration",
              metadata: { name: "harness-test" },
              webhooks: [{
                name: "pods.harness.test",
                clientConfig: { url: webhook.url, caBundle: btoa(webhook.caPem) },
                rules: [{
                  apiGroups: [""],
                  apiVersions: ["v1"],
                  operations: ["CREATE"],
                  resources: ["pods"],
                }],
                sideEffects: "None",
                admissionReviewVersions: ["v1"],
                failurePolicy: "Fail",
                timeoutSeconds: 5,
              }],
            }),
          });
          const core = kube.kubeConfig.makeApiClient(CoreV1Api);
          // The configuration takes effect after a delay: create canaries until one is seen.
          let canary = 0;
          await waitFor("the webhook to see a canary pod", async () => {
            const name = `canary-${canary++}`;
            await core.createNamespacedPod({ namespace: "default", body: pod(name) });
            return webhook.seen.includes(name);
          }, { timeoutMs: 30_000, intervalMs: 500 });

          const created = await core.createNamespacedPod({
            namespace: "default",
            body: pod("target"),
          });
          assert.ok(webhook.seen.includes("target"), `webhook saw ${webhook.seen.join(",")}`);
          assert.equal(created.metadata?.labels?.["webhook-saw"], "yes");
        } finally {
          await webhook.close();
        }
      });

      await t.step("restart keeps the data and serves again", async () => {
        await kube.restart();
        const out = await kube.kubectl(["get", CLASS_PLURAL, "-A", "-o", "name"], {
          check: true,
        });
        assert.match(out.stdout, /by-client-node/);
      });
    } finally {
      const dir = kube.dir;
      await kube.stop();
      await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
    }
  },
});
