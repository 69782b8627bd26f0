/**
 * The CAProviderClass status writer against a real kube-apiserver, as the webhook's
 * ServiceAccount under the manifests' RBAC (manifests/webhook/rbac.yaml, impersonated), with the
 * real CRD (manifests/crds/caproviderclasses.yaml) and two replicas writing at once.
 */

import assert from "node:assert/strict";
import {
  CLASS_API_VERSION,
  CLASS_GROUP,
  CLASS_KIND,
  CLASS_PLURAL,
  CLASS_VERSION,
} from "../api/mod.ts";
import { X509Certificate } from "node:crypto";
import { fileURLToPath } from "node:url";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { KubeClient } from "../kube/mod.ts";
import { createLogger } from "../cli/mod.ts";
import { Registry } from "../prometheus/mod.ts";
import {
  type ClassStatus,
  type ClassStatusController,
  MAX_DROPPED_TEXT,
  rfc3339,
  startClassStatus,
} from "../webhook/class_status.ts";
import { makeCert } from "../trust_store/testdata/pki.ts";
import { createCa, installCrds, needsTools, startKubeApiServer, waitFor } from "./harness/mod.ts";
import { applyObject, certSha256 } from "./harness/kube_objects.ts";
import { setTimeout as delay } from "node:timers/promises";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CRD = `${ROOT}manifests/crds/caproviderclasses.yaml`;
const RBAC = `${ROOT}manifests/webhook/rbac.yaml`;
const SA_USER = "system:serviceaccount:spire-cacerts:spire-cacerts-webhook";
/** How fast a source change must reach the status. */
const WITHIN_MS = 2_000;

/** The admin's kubeconfig, acting as the webhook's ServiceAccount. */
function asWebhook(admin: KubeClient): KubeClient {
  return new KubeClient({ ...admin.config, impersonateUser: SA_USER });
}

function secret(ns: string, name: string, data: Record<string, string>, type = "Opaque") {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type,
    metadata: { namespace: ns, name },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, btoa(v)])),
  };
}

function capClass(name: string, ref: Record<string, string>) {
  return {
    apiVersion: CLASS_API_VERSION,
    kind: CLASS_KIND,
    metadata: { namespace: "shop", name },
    spec: { refs: [{ apiGroup: "", ...ref }] },
  };
}

Deno.test({
  name:
    "class status on a real apiserver: Ready follows its sources within 2 s, RBAC per namespace",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-class-status-" });
    const kube = await startKubeApiServer();
    const controllers: ClassStatusController[] = [];
    try {
      const [caOne, caTwo, caWeb] = await Promise.all([
        createCa(dir, "ca-one", "Status CA one"),
        createCa(dir, "ca-two", "Status CA two"),
        createCa(dir, "ca-web", "Status CA web"),
      ]);
      await installCrds(kube, CRD);
      for (const ns of ["spire", "spire-cacerts", "shop", "team"]) {
        await kube.kubectl(["create", "namespace", ns], { check: true });
      }
      await kube.kubectl(["apply", "-f", RBAC], { check: true });
      const can = async (...args: string[]) =>
        (await kube.kubectl(["auth", "can-i", `--as=${SA_USER}`, ...args])).stdout.trim();
      // Least privilege: sources are readable only where a RoleBinding grants it; in spire only
      // the bundle Secret, by name.
      assert.equal(await can("list", "secrets", "-A"), "no");
      assert.equal(await can("watch", "secrets", "-n", "spire"), "no");
      assert.equal(await can("watch", "secrets/spire-ca-bundle", "-n", "spire"), "yes");
      assert.equal(await can("list", "configmaps", "-n", "team"), "no");
      // shop is a namespace whose owner granted reads (the documented RoleBinding).
      await kube.kubectl([
        "create",
        "rolebinding",
        "spire-cacerts-source-reader",
        "--clusterrole=spire-cacerts-source-reader",
        "--serviceaccount=spire-cacerts:spire-cacerts-webhook",
        "-n",
        "shop",
      ], { check: true });
      assert.equal(
        await can("patch", `${CLASS_PLURAL}.${CLASS_GROUP}`, "--subresource=status", "-A"),
        "yes",
      );

      await applyObject(
        kube,
        secret("spire", "spire-ca-bundle", { "ca.crt": caOne.certPem + caTwo.certPem }),
      );
      await applyObject(
        kube,
        secret("shop", "web-tls", {
          "tls.crt": caWeb.certPem,
          "tls.key": caWeb.keyPem,
        }, "kubernetes.io/tls"),
      );
      await applyObject(
        kube,
        capClass("spire-ca", {
          kind: "Secret",
          namespace: "spire",
          name: "spire-ca-bundle",
          key: "ca.crt",
        }),
      );
      await applyObject(
        kube,
        capClass("web", { kind: "Secret", namespace: "shop", name: "web-tls" }),
      );
      await applyObject(
        kube,
        capClass("team", {
          kind: "ConfigMap",
          namespace: "team",
          name: "roots",
          key: "ca.crt",
        }),
      );
      await kube.kubectl([
        "-n",
        "team",
        "create",
        "configmap",
        "roots",
        `--from-file=ca.crt=${caWeb.certPath}`,
      ], {
        check: true,
      });

      // Two replicas, as deployed.
      const sa = asWebhook(kube.client);
      const metrics = new Registry();
      // The 403s before the RoleBinding exists are expected; only errors are shown.
      const log = createLogger("error");
      controllers.push(await startClassStatus({ client: sa, log, metrics }));
      controllers.push(await startClassStatus({ client: sa, log }));

      const custom = kube.kubeConfig.makeApiClient(CustomObjectsApi);
      const read = async (name: string) =>
        await custom.getNamespacedCustomObject({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace: "shop",
          plural: CLASS_PLURAL,
          name,
        }) as { metadata: { resourceVersion: string; generation: number }; status?: ClassStatus };
      const ready = async (name: string) => (await read(name)).status?.conditions?.[0];

      await t.step("two CAs: count, fingerprints and earliest NotAfter", async () => {
        const cls = await waitFor("spire-ca Ready", async () => {
          const c = await read("spire-ca");
          return c.status?.conditions?.[0]?.status === "True" ? c : undefined;
        }, { timeoutMs: 15_000, intervalMs: 100 });
        const status = cls.status!;
        assert.equal(status.observedGeneration, cls.metadata.generation);
        assert.equal(status.conditions[0].observedGeneration, cls.metadata.generation);
        assert.equal(status.conditions[0].reason, "Resolved");
        assert.equal(status.certificates, 2);
        assert.deepEqual(
          status.fingerprints,
          [certSha256(caOne.certPem), certSha256(caTwo.certPem)].sort(),
        );
        const notAfter = [caOne.certPem, caTwo.certPem].map((p) =>
          new Date(new X509Certificate(p).validTo).getTime()
        );
        assert.equal(status.earliestNotAfter, rfc3339(new Date(Math.min(...notAfter))));
        assert.deepEqual(status.resolvedRefs, [{
          kind: "Secret",
          namespace: "spire",
          name: "spire-ca-bundle",
          key: "ca.crt",
          keySource: "Ref",
          certificates: 2,
        }]);
      });

      await t.step("a keyless ref to a Secret with only tls.crt shows the key used", async () => {
        const status = await waitFor("web Ready", async () => {
          const s = (await read("web")).status;
          return s?.conditions?.[0]?.status === "True" ? s : undefined;
        }, { timeoutMs: 15_000, intervalMs: 100 });
        assert.deepEqual(status.resolvedRefs?.[0], {
          kind: "Secret",
          namespace: "shop",
          name: "web-tls",
          key: "tls.crt",
          keySource: "Fallback",
          certificates: 1,
        });
        assert.match(
          status.conditions[0].message,
          /key tls\.crt \(ref without key; the object has no ca\.crt\)/,
        );
        assert.doesNotMatch(JSON.stringify(status), /PRIVATE KEY|LS0t/);
      });

      await t.step("kubectl get caproviderclass -A shows Ready and the count", async () => {
        const out = (await kube.kubectl(["get", "caproviderclass", "-A"], { check: true })).stdout;
        const [header, ...rows] = out.trim().split("\n");
        const columns = header.trim().split(/\s{2,}/);
        assert.deepEqual(columns, [
          "NAMESPACE",
          "NAME",
          "REFS",
          "READY",
          "CERTIFICATES",
          "EXPIRES",
          "AGE",
        ]);
        const row = rows.map((r) => r.trim().split(/\s{2,}/)).find((r) => r[1] === "spire-ca");
        assert.ok(row, out);
        const cell = (name: string) => row[columns.indexOf(name)];
        assert.equal(cell("READY"), "True", out);
        assert.equal(cell("CERTIFICATES"), "2", out);
        assert.match(cell("EXPIRES"), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, out);
        const described =
          (await kube.kubectl(["describe", "caproviderclass", "-n", "shop", "spire-ca"], {
            check: true,
          })).stdout;
        assert.match(described, /2 CA certificates from Secret spire\/spire-ca-bundle key ca\.crt/);
      });

      await t.step(
        "a deleted Secret turns Ready False naming it, and back when it returns",
        async () => {
          const before = await ready("spire-ca");
          await kube.kubectl(["-n", "spire", "delete", "secret", "spire-ca-bundle"], {
            check: true,
          });
          const gone = await waitFor("spire-ca not Ready", async () => {
            const c = await ready("spire-ca");
            return c?.status === "False" ? c : undefined;
          }, { timeoutMs: WITHIN_MS, intervalMs: 50 });
          assert.equal(gone.reason, "SourceNotFound");
          assert.match(
            gone.message,
            /^Secret spire\/spire-ca-bundle \(from CAProviderClass shop\/spire-ca\) not found$/,
          );
          assert.notEqual(gone.lastTransitionTime < before!.lastTransitionTime, true);
          assert.equal((await read("spire-ca")).status?.certificates, 0);

          await applyObject(kube, secret("spire", "spire-ca-bundle", { "ca.crt": caOne.certPem }));
          const back = await waitFor("spire-ca Ready again", async () => {
            const c = await read("spire-ca");
            return c.status?.conditions?.[0]?.status === "True" ? c.status : undefined;
          }, { timeoutMs: WITHIN_MS, intervalMs: 50 });
          assert.equal(back.certificates, 1);
          assert.deepEqual(back.fingerprints, [certSha256(caOne.certPem)]);
        },
      );

      await t.step(
        "a ref into a namespace without RoleBinding shows Forbidden, then True once bound",
        async () => {
          const denied = await waitFor("team Forbidden", async () => {
            const c = await ready("team");
            return c?.reason === "Forbidden" ? c : undefined;
          }, { timeoutMs: 15_000, intervalMs: 100 });
          assert.equal(denied.status, "False");
          const command = /`(kubectl create rolebinding [^`]+)`/.exec(denied.message)?.[1];
          assert.equal(
            command,
            "kubectl create rolebinding spire-cacerts-source-reader " +
              "--clusterrole=spire-cacerts-source-reader " +
              "--serviceaccount=spire-cacerts:spire-cacerts-webhook -n team",
          );
          assert.match(denied.message, /namespace "team"/);
          // Run exactly what the message says.
          await kube.kubectl(command!.split(" ").slice(1), { check: true });
          const granted = await waitFor("team Ready", async () => {
            const c = await ready("team");
            return c?.status === "True" ? c : undefined;
          }, { timeoutMs: 10_000, intervalMs: 100 });
          assert.equal(granted.reason, "Resolved");
          assert.match(granted.message, /ConfigMap team\/roots key ca\.crt/);
        },
      );

      await t.step(
        "dropped certificates are listed in status (CRD schema keeps them), Ready stays True",
        async () => {
          const DAY = 86_400_000;
          const expired = await makeCert({
            subject: `CN=Dropped expired, O=${"o".repeat(300)}`,
            notBefore: new Date(Date.now() - 10 * DAY),
            notAfter: new Date(Date.now() - DAY),
          });
          const leaf = await makeCert({ subject: "CN=Dropped leaf", ca: false });
          await applyObject(
            kube,
            secret("shop", "mixed", { "ca.crt": caOne.certPem + expired.pem + leaf.pem }),
          );
          await applyObject(
            kube,
            capClass("mixed", { kind: "Secret", namespace: "shop", name: "mixed", key: "ca.crt" }),
          );
          const status = await waitFor("mixed lists its dropped certificates", async () => {
            const s = (await read("mixed")).status;
            return s?.droppedCount === 2 ? s : undefined;
          }, { timeoutMs: 15_000, intervalMs: 100 });
          const [cond] = status.conditions;
          assert.equal(cond.status, "True");
          assert.equal(cond.reason, "Resolved");
          assert.match(
            cond.message,
            /; 2 certificates dropped \(1 expired, 1 non_ca; see status\.droppedCertificates\)/,
          );
          assert.equal(status.certificates, 1);
          const dropped = status.droppedCertificates ?? [];
          assert.deepEqual(dropped.map((d) => [d.reason, d.sha256, d.source]), [
            ["expired", certSha256(expired.pem), "Secret shop/mixed key ca.crt"],
            ["non_ca", certSha256(leaf.pem), "Secret shop/mixed key ca.crt"],
          ]);
          assert.equal(dropped[0].subject.length, MAX_DROPPED_TEXT);
          assert.ok(dropped[0].subject.startsWith("CN=Dropped expired"));
          assert.match(dropped[0].detail ?? "", /^notAfter \d{4}-/);
          assert.equal(dropped[1].subject, "CN=Dropped leaf");

          // Fixed: the fields go away (server-side apply drops what the manager no longer sets).
          await applyObject(kube, secret("shop", "mixed", { "ca.crt": caOne.certPem }));
          const clean = await waitFor("mixed without dropped certificates", async () => {
            const s = (await read("mixed")).status;
            return s?.droppedCount === undefined ? s : undefined;
          }, { timeoutMs: WITHIN_MS, intervalMs: 50 });
          assert.equal(clean.droppedCertificates, undefined);
          assert.equal(clean.conditions[0].status, "True");
          assert.doesNotMatch(clean.conditions[0].message, /dropped/);
        },
      );

      await t.step("both replicas settle: no further writes without a change", async () => {
        await Promise.all(controllers.map((c) => c.idle()));
        const names = ["spire-ca", "web", "team", "mixed"];
        const before = await Promise.all(
          names.map(async (n) => (await read(n)).metadata.resourceVersion),
        );
        await delay(3_000);
        const after = await Promise.all(
          names.map(async (n) => (await read(n)).metadata.resourceVersion),
        );
        assert.deepEqual(after, before);
        const writes = metrics.value("spire_cacerts_webhook_class_status_writes_total", {
          result: "ok",
        });
        assert.ok(writes >= 1, "replica a wrote");
        assert.equal(
          metrics.value("spire_cacerts_webhook_caproviderclasses", { ready: "true" }),
          4,
        );
      });
    } finally {
      await Promise.all(controllers.map((c) => c.stop()));
      await kube.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "class status on a real apiserver: ClusterTrustBundle refs by name and by signer, as the " +
    "webhook's ServiceAccount",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-class-status-ctb-" });
    const kube = await startKubeApiServer();
    let controller: ClassStatusController | undefined;
    try {
      const [caOne, caTwo] = await Promise.all([
        createCa(dir, "ca-one", "Bundle CA one"),
        createCa(dir, "ca-two", "Bundle CA two"),
      ]);
      await installCrds(kube, CRD);
      for (const ns of ["spire", "spire-cacerts", "shop"]) {
        await kube.kubectl(["create", "namespace", ns], { check: true });
      }
      await kube.kubectl(["apply", "-f", RBAC], { check: true });
      const signer = "cacerts.csi.cert-manager.io/spire-example.org";
      const own = "cacerts.csi.cert-manager.io:spire-example.org:bundle";
      const extra = "cacerts.csi.cert-manager.io:spire-example.org:extra";
      const bundle = (name: string, pem: string, labels: Record<string, string> = {}) => ({
        apiVersion: "certificates.k8s.io/v1",
        kind: "ClusterTrustBundle",
        metadata: { name, labels },
        spec: { signerName: signer, trustBundle: pem },
      });
      await applyObject(kube, bundle(own, caOne.certPem));
      await applyObject(kube, bundle(extra, caTwo.certPem, { tier: "prod" }));
      const ctbClass = (name: string, ref: Record<string, unknown>) => ({
        apiVersion: CLASS_API_VERSION,
        kind: CLASS_KIND,
        metadata: { namespace: "shop", name },
        spec: { refs: [{ apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle", ...ref }] },
      });
      await applyObject(kube, ctbClass("by-name", { name: own }));
      await applyObject(
        kube,
        ctbClass("by-signer", {
          signerName: signer,
          labelSelector: { matchLabels: { tier: "prod" } },
        }),
      );
      await applyObject(kube, ctbClass("no-match", { signerName: "example.com/none" }));

      controller = await startClassStatus({
        client: asWebhook(kube.client),
        log: createLogger("error"),
      });
      const custom = kube.kubeConfig.makeApiClient(CustomObjectsApi);
      const status = async (name: string) =>
        ((await custom.getNamespacedCustomObject({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace: "shop",
          plural: CLASS_PLURAL,
          name,
        })) as { status?: ClassStatus }).status;
      const until = (name: string, ready: "True" | "False", timeoutMs = 15_000) =>
        waitFor(`${name} Ready=${ready}`, async () => {
          const s = await status(name);
          return s?.conditions?.[0]?.status === ready ? s : undefined;
        }, { timeoutMs, intervalMs: 50 });

      await t.step("by name: the bundle's CAs, the bundle named", async () => {
        const s = await until("by-name", "True");
        assert.equal(s.certificates, 1);
        assert.deepEqual(s.fingerprints, [certSha256(caOne.certPem)]);
        assert.deepEqual(s.resolvedRefs, [{
          kind: "ClusterTrustBundle",
          name: own,
          bundles: [own],
          certificates: 1,
        }]);
        assert.match(
          s.conditions[0].message,
          new RegExp(`^1 CA certificate from ClusterTrustBundle ${own};`),
        );
      });

      await t.step("by signer and labels: only the matching bundle", async () => {
        const s = await until("by-signer", "True");
        assert.deepEqual(s.fingerprints, [certSha256(caTwo.certPem)]);
        assert.deepEqual(s.resolvedRefs, [{
          kind: "ClusterTrustBundle",
          signerName: signer,
          labelSelector: "tier=prod",
          bundles: [extra],
          certificates: 1,
        }]);
      });

      await t.step(
        "no bundle of the signer: Ready False naming the signer and the fix",
        async () => {
          const s = await until("no-match", "False");
          assert.equal(s.conditions[0].reason, "SourceNotFound");
          assert.match(
            s.conditions[0].message,
            /no ClusterTrustBundle has spec\.signerName example\.com\/none; create one, or fix spec\.refs\[0\]$/,
          );
        },
      );

      await t.step("a deleted bundle turns Ready False, and back when it returns", async () => {
        await kube.kubectl(["delete", "clustertrustbundle", own], { check: true });
        const gone = await until("by-name", "False", WITHIN_MS);
        assert.equal(gone.conditions[0].reason, "SourceNotFound");
        assert.equal(
          gone.conditions[0].message,
          `ClusterTrustBundle ${own} (from CAProviderClass shop/by-name) not found`,
        );
        await applyObject(kube, bundle(own, caOne.certPem + caTwo.certPem));
        const back = await until("by-name", "True", WITHIN_MS);
        assert.equal(back.certificates, 2);
      });

      await t.step("a bundle relabelled out of the selection leaves it", async () => {
        await applyObject(kube, bundle(extra, caTwo.certPem, { tier: "dev" }));
        const left = await until("by-signer", "False", WITHIN_MS);
        assert.equal(left.conditions[0].reason, "SourceNotFound");
        assert.match(left.conditions[0].message, /and labels matching "tier=prod"/);
      });
    } finally {
      await controller?.stop();
      await kube.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
