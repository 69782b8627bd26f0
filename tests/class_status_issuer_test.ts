/**
 * The CAProviderClass status writer with cert-manager issuer refs, against a real
 * kube-apiserver: the webhook's ServiceAccount under the manifests' RBAC (impersonated), the real
 * CRD, and cert-manager's Issuer and ClusterIssuer CRDs from the minimal fixture. A CA Issuer is
 * Ready with the Secret and key it read (`resolvedRefs[].secret` survives the CRD's schema, so the
 * status stays put instead of being rewritten), an ACME Issuer is `InvalidRef` naming it, and a
 * ClusterIssuer whose Secret is in `cert-manager` is `Forbidden` with the RoleBinding command
 * until that RoleBinding exists.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CustomObjectsApi } from "@kubernetes/client-node";
import {
  CLASS_API_VERSION,
  CLASS_GROUP,
  CLASS_KIND,
  CLASS_PLURAL,
  CLASS_VERSION,
} from "../api/mod.ts";
import { createLogger } from "../cli/mod.ts";
import { KubeClient } from "../kube/mod.ts";
import {
  type ClassStatus,
  type ClassStatusController,
  startClassStatus,
} from "../webhook/class_status.ts";
import { createCa, installCrds, needsTools, startKubeApiServer, waitFor } from "./harness/mod.ts";
import { applyObject, certSha256 } from "./harness/kube_objects.ts";
import { setTimeout as delay } from "node:timers/promises";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CRD = `${ROOT}manifests/crds/caproviderclasses.yaml`;
const ISSUER_CRDS = `${ROOT}tests/harness/fixtures/cert_manager_issuers_crd.yaml`;
const RBAC = `${ROOT}manifests/webhook/rbac.yaml`;
const SA_USER = "system:serviceaccount:spire-cacerts:spire-cacerts-webhook";
const CM = "cert-manager.io";

Deno.test({
  name: "class status on a real apiserver: CA Issuer Ready, ACME InvalidRef, ClusterIssuer RBAC",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-class-status-issuer-" });
    const kube = await startKubeApiServer();
    let controller: ClassStatusController | undefined;
    try {
      const [teamCa, rootCa] = await Promise.all([
        createCa(dir, "ca-team", "Status issuer CA team"),
        createCa(dir, "ca-root", "Status issuer CA root"),
      ]);
      await installCrds(kube, CRD);
      await installCrds(kube, ISSUER_CRDS);
      for (const ns of ["spire", "spire-cacerts", "shop", "cert-manager"]) {
        await kube.kubectl(["create", "namespace", ns], { check: true });
      }
      await kube.kubectl(["apply", "-f", RBAC], { check: true });
      const can = async (...args: string[]) =>
        (await kube.kubectl(["auth", "can-i", `--as=${SA_USER}`, ...args])).stdout.trim();
      assert.equal(await can("watch", `clusterissuers.${CM}`), "yes");
      assert.equal(await can("list", `issuers.${CM}`, "-A"), "yes");
      assert.equal(await can("list", "secrets", "-n", "cert-manager"), "no");
      const grant = (ns: string) =>
        "kubectl create rolebinding spire-cacerts-source-reader " +
        "--clusterrole=spire-cacerts-source-reader " +
        `--serviceaccount=spire-cacerts:spire-cacerts-webhook -n ${ns}`;
      await kube.kubectl(grant("shop").split(" ").slice(1), { check: true });

      const tls = (namespace: string, name: string, pem: string, key: string) => ({
        apiVersion: "v1",
        kind: "Secret",
        type: "kubernetes.io/tls",
        metadata: { namespace, name },
        data: { "tls.crt": btoa(pem), "tls.key": btoa(key) },
      });
      await applyObject(kube, tls("shop", "team-ca-key", teamCa.certPem, teamCa.keyPem));
      await applyObject(kube, tls("cert-manager", "root-ca-key", rootCa.certPem, rootCa.keyPem));
      await applyObject(kube, {
        apiVersion: `${CM}/v1`,
        kind: "Issuer",
        metadata: { namespace: "shop", name: "team-ca" },
        spec: { ca: { secretName: "team-ca-key" } },
      });
      await applyObject(kube, {
        apiVersion: `${CM}/v1`,
        kind: "Issuer",
        metadata: { namespace: "shop", name: "letsencrypt" },
        spec: { acme: { server: "https://acme-v02.api.letsencrypt.org/directory" } },
      });
      await applyObject(kube, {
        apiVersion: `${CM}/v1`,
        kind: "ClusterIssuer",
        metadata: { name: "root" },
        spec: { ca: { secretName: "root-ca-key" } },
      });
      const capClass = (name: string, ref: Record<string, string>) => ({
        apiVersion: CLASS_API_VERSION,
        kind: CLASS_KIND,
        metadata: { namespace: "shop", name },
        spec: { refs: [{ apiGroup: CM, ...ref }] },
      });
      await applyObject(kube, capClass("team", { kind: "Issuer", name: "team-ca" }));
      await applyObject(kube, capClass("acme", { kind: "Issuer", name: "letsencrypt" }));
      await applyObject(kube, capClass("root", { kind: "ClusterIssuer", name: "root" }));

      const client = new KubeClient({ ...kube.client.config, impersonateUser: SA_USER });
      controller = await startClassStatus({ client, log: createLogger("error") });
      const custom = kube.kubeConfig.makeApiClient(CustomObjectsApi);
      const read = async (name: string) =>
        await custom.getNamespacedCustomObject({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace: "shop",
          plural: CLASS_PLURAL,
          name,
        }) as { metadata: { resourceVersion: string }; status?: ClassStatus };
      const condition = (name: string, reason: string) =>
        waitFor(`${name} ${reason}`, async () => {
          const c = await read(name);
          return c.status?.conditions?.[0]?.reason === reason ? c : undefined;
        }, { timeoutMs: 15_000, intervalMs: 100 });

      await t.step("a CA Issuer is Ready, with the Secret and key read stored", async () => {
        const cls = await condition("team", "Resolved");
        const status = cls.status!;
        assert.equal(status.certificates, 1);
        assert.deepEqual(status.fingerprints, [certSha256(teamCa.certPem)]);
        assert.deepEqual(status.resolvedRefs, [{
          kind: "Issuer",
          namespace: "shop",
          name: "team-ca",
          secret: { namespace: "shop", name: "team-ca-key" },
          key: "tls.crt",
          keySource: "Fallback",
          certificates: 1,
        }]);
        assert.doesNotMatch(JSON.stringify(status), /PRIVATE KEY|LS0t/);
        // The stored status equals the computed one: nothing is rewritten.
        await delay(1_000);
        assert.equal((await read("team")).metadata.resourceVersion, cls.metadata.resourceVersion);
      });

      await t.step("an ACME Issuer is InvalidRef naming it and its type", async () => {
        const ready = (await condition("acme", "InvalidRef")).status!.conditions[0];
        assert.equal(ready.status, "False");
        assert.match(
          ready.message,
          /^Issuer shop\/letsencrypt \(from CAProviderClass shop\/acme\) is an acme issuer; only CA issuers \(spec\.ca\.secretName\) can be read/,
        );
      });

      await t.step(
        "a ClusterIssuer's Secret in cert-manager: Forbidden with the command, then Ready",
        async () => {
          const denied = (await condition("root", "Forbidden")).status!.conditions[0];
          assert.match(denied.message, /in namespace "cert-manager"/);
          assert.ok(denied.message.includes(`\`${grant("cert-manager")}\``), denied.message);
          await kube.kubectl(grant("cert-manager").split(" ").slice(1), { check: true });
          const cls = await condition("root", "Resolved");
          assert.deepEqual(cls.status!.fingerprints, [certSha256(rootCa.certPem)]);
          assert.deepEqual(cls.status!.resolvedRefs?.[0].secret, {
            namespace: "cert-manager",
            name: "root-ca-key",
          });
        },
      );
    } finally {
      await controller?.stop();
      await kube.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
