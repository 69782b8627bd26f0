/**
 * cert-manager issuer refs through the real driver process, on a real kube-apiserver: the
 * driver runs as its ServiceAccount with a token the API server minted and exactly the RBAC of
 * manifests/csi/rbac.yaml (issuers and clusterissuers readable cluster-wide, Secrets only where a
 * RoleBinding grants them), with cert-manager's Issuer and ClusterIssuer CRDs installed from a
 * minimal fixture (tests/harness/fixtures/cert_manager_issuers_crd.yaml).
 *
 * - A CA Issuer's Secret (a `kubernetes.io/tls` CA key pair: tls.crt, no ca.crt) is rendered
 *   into the store over gRPC NodePublishVolume; a new certificate in the Secret, and then a new
 *   `spec.ca.secretName` on the issuer, reach the mounted store without a republish.
 * - An ACME Issuer is refused: FAILED_PRECONDITION naming the issuer, its type, and that only CA
 *   issuers can be read.
 * - A ClusterIssuer's Secret lives in cert-manager's namespace: refused (PERMISSION_DENIED, the
 *   namespace and the RoleBinding command named) until that RoleBinding exists, as the README
 *   grants it, then published.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import {
  type CertificateFiles,
  createCa,
  installCrds,
  type KubeApiServer,
  needsTools,
  startKubeApiServer,
  waitFor,
  writeServiceAccountKubeconfig,
} from "./harness/mod.ts";
import {
  applyObject,
  caClassObject,
  caFingerprints,
  storeFingerprints,
} from "./harness/kube_objects.ts";
import { type DriverProcess, startDriverProcess } from "./harness/driver_process.ts";
import { CsiCallError, CsiClient, publishRequest, unmountUnder } from "./faults/helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CRD = join(ROOT, "manifests/crds/caproviderclasses.yaml");
const ISSUER_CRDS = join(ROOT, "tests/harness/fixtures/cert_manager_issuers_crd.yaml");
const RBAC = join(ROOT, "manifests/csi/rbac.yaml");
const CM = "cert-manager.io";

/** The RoleBinding the README documents for a namespace. */
function grant(namespace: string): string {
  return "kubectl create rolebinding spire-cacerts-csi-source-reader " +
    "--clusterrole=spire-cacerts-csi-source-reader " +
    `--serviceaccount=spire-cacerts:spire-cacerts-csi -n ${namespace}`;
}

/** A CA key pair as `kubectl create secret tls` makes it: tls.crt and tls.key, no ca.crt. */
function tlsSecret(namespace: string, name: string, ca: CertificateFiles) {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: { namespace, name },
    data: { "tls.crt": btoa(ca.certPem), "tls.key": btoa(ca.keyPem) },
  };
}

function issuer(kind: "Issuer" | "ClusterIssuer", name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: `${CM}/v1`,
    kind,
    metadata: { name, ...(kind === "Issuer" ? { namespace: "shop" } : {}) },
    spec,
  };
}

/** A kubeconfig for the driver's ServiceAccount with a token the API server minted. */
function driverKubeconfig(kube: KubeApiServer, path: string): Promise<void> {
  return writeServiceAccountKubeconfig(
    kube,
    { namespace: "spire-cacerts", name: "spire-cacerts-csi" },
    path,
  );
}

Deno.test({
  name:
    "driver reads cert-manager CA Issuers and ClusterIssuers, follows their Secrets, refuses ACME",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-issuer-" });
    const kube = await startKubeApiServer();
    let driver: DriverProcess | undefined;
    let client: CsiClient | undefined;
    const target = (pod: string) => join(dir, "pods", pod, "mount");
    try {
      const [teamCa, rotatedCa, movedCa, rootCa] = await Promise.all(
        ["team", "rotated", "moved", "root"].map((n) =>
          createCa(dir, `ca-${n}`, `Issuer test CA ${n}`)
        ),
      );
      await installCrds(kube, CRD);
      await installCrds(kube, ISSUER_CRDS);
      for (const ns of ["spire-cacerts", "spire", "shop", "cert-manager"]) {
        await applyObject(kube, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
      }
      await kube.kubectl(["apply", "-f", RBAC], { check: true });
      // The pod's own namespace holds the Issuer's Secret: granted as the README says.
      await kube.kubectl(grant("shop").split(" ").slice(1), { check: true });

      await applyObject(kube, tlsSecret("shop", "team-ca-key", teamCa));
      await applyObject(kube, tlsSecret("shop", "moved-ca-key", movedCa));
      await applyObject(kube, issuer("Issuer", "team-ca", { ca: { secretName: "team-ca-key" } }));
      await applyObject(
        kube,
        issuer("Issuer", "letsencrypt", {
          acme: {
            server: "https://acme-v02.api.letsencrypt.org/directory",
            privateKeySecretRef: { name: "letsencrypt-account" },
            solvers: [{ http01: { ingress: {} } }],
          },
        }),
      );
      await applyObject(kube, tlsSecret("cert-manager", "root-ca-key", rootCa));
      await applyObject(
        kube,
        issuer("ClusterIssuer", "root", { ca: { secretName: "root-ca-key" } }),
      );
      await applyObject(
        kube,
        caClassObject("shop", "team", [{ apiGroup: CM, kind: "Issuer", name: "team-ca" }]),
      );
      await applyObject(
        kube,
        caClassObject("shop", "acme", [{ apiGroup: CM, kind: "Issuer", name: "letsencrypt" }]),
      );
      await applyObject(
        kube,
        caClassObject("shop", "root", [{ apiGroup: CM, kind: "ClusterIssuer", name: "root" }]),
      );

      const kubeconfigPath = join(dir, "csi.kubeconfig");
      await driverKubeconfig(kube, kubeconfigPath);
      driver = await startDriverProcess({ dir, kubeconfigPath, args: ["--base-roots=none"] });
      client = new CsiClient(driver.endpoint);
      const detail = () => driver!.process.logTail();

      await t.step("a CA Issuer's Secret (tls.crt, no ca.crt) is rendered", async () => {
        await client!.publish(publishRequest("vol-web-1", target("web-1"), "web-1", "team"));
        assert.equal(await storeFingerprints(target("web-1")), caFingerprints(teamCa));
      });

      await t.step("a new certificate in the Secret reaches the mounted store", async () => {
        await applyObject(kube, tlsSecret("shop", "team-ca-key", rotatedCa));
        await waitFor(
          "web-1 follows Secret shop/team-ca-key",
          async () => await storeFingerprints(target("web-1")) === caFingerprints(rotatedCa),
          { timeoutMs: 20_000, detail },
        );
      });

      await t.step(
        "a new spec.ca.secretName on the issuer moves the store to that Secret",
        async () => {
          await applyObject(
            kube,
            issuer("Issuer", "team-ca", { ca: { secretName: "moved-ca-key" } }),
          );
          await waitFor(
            "web-1 follows Issuer shop/team-ca to Secret shop/moved-ca-key",
            async () => await storeFingerprints(target("web-1")) === caFingerprints(movedCa),
            { timeoutMs: 20_000, detail },
          );
        },
      );

      await t.step("an ACME Issuer is refused: FAILED_PRECONDITION, only CA issuers", async () => {
        const refused = await client!.publish(
          publishRequest("vol-web-2", target("web-2"), "web-2", "acme"),
        ).then(() => undefined, (e: unknown) => e);
        assert.ok(refused instanceof CsiCallError, String(refused));
        assert.equal(refused.code, status.FAILED_PRECONDITION, refused.details);
        assert.match(
          refused.details,
          /^Issuer shop\/letsencrypt \(from CAProviderClass shop\/acme\) is an acme issuer; only CA issuers \(spec\.ca\.secretName\) can be read/,
        );
      });

      await t.step(
        "a ClusterIssuer's Secret in cert-manager: PERMISSION_DENIED until the RoleBinding exists",
        async () => {
          const refused = await client!.publish(
            publishRequest("vol-web-3", target("web-3"), "web-3", "root"),
          ).then(() => undefined, (e: unknown) => e);
          assert.ok(refused instanceof CsiCallError, String(refused));
          assert.equal(refused.code, status.PERMISSION_DENIED, refused.details);
          assert.match(
            refused.details,
            /^cannot read Secret cert-manager\/root-ca-key \(from CAProviderClass shop\/root via ClusterIssuer root\): HTTP 403: .*in namespace "cert-manager"/,
          );
          assert.ok(refused.details.includes(`\`${grant("cert-manager")}\``), refused.details);

          await kube.kubectl(grant("cert-manager").split(" ").slice(1), { check: true });
          // The refused Secret's watch retries with backoff; publish again until it is read.
          await waitFor("web-3 publishes once cert-manager is granted", async () => {
            try {
              await client!.publish(publishRequest("vol-web-3", target("web-3"), "web-3", "root"));
              return true;
            } catch (error) {
              if (error instanceof CsiCallError && error.code === status.PERMISSION_DENIED) {
                return false;
              }
              throw error;
            }
          }, { timeoutMs: 30_000, intervalMs: 500, detail });
          assert.equal(await storeFingerprints(target("web-3")), caFingerprints(rootCa));
        },
      );

      for (const pod of ["web-1", "web-3"]) await client.unpublish(`vol-${pod}`, target(pod));
      driver.process.assertRunning();
    } finally {
      client?.close();
      await driver?.process.stop();
      await unmountUnder(dir);
      await kube.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
