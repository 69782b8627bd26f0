/**
 * The driver with least privilege, on a real kube-apiserver: it runs as its ServiceAccount with a
 * token minted by the API server and exactly the RBAC of manifests/csi/rbac.yaml (Secret and
 * ConfigMap reads only in `spire`, through a RoleBinding), so a class that reads another
 * namespace is refused with PERMISSION_DENIED and a Warning Event naming the RoleBinding to
 * create; running that very command makes the next publish (and the kept volume) succeed. It also
 * reads ClusterTrustBundles by name and by signer + label selector, and follows their changes.
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
const RBAC = join(ROOT, "manifests/csi/rbac.yaml");
const SA = "system:serviceaccount:spire-cacerts:spire-cacerts-csi";
/** The grant the README documents for a namespace (here `team`). */
const GRANT = "kubectl create rolebinding spire-cacerts-csi-source-reader " +
  "--clusterrole=spire-cacerts-csi-source-reader " +
  "--serviceaccount=spire-cacerts:spire-cacerts-csi -n team";
const SIGNER = "example.com/demo";

function bundle(name: string, ca: CertificateFiles, labels?: Record<string, string>) {
  return {
    apiVersion: "certificates.k8s.io/v1",
    kind: "ClusterTrustBundle",
    metadata: { name, ...(labels ? { labels } : {}) },
    spec: { ...(name.includes(":") ? { signerName: SIGNER } : {}), trustBundle: ca.certPem },
  };
}

interface EventItem {
  type: string;
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string };
}

async function eventFor(kube: KubeApiServer, pod: string, reason: string): Promise<EventItem> {
  return await waitFor(`${reason} Event on pod shop/${pod}`, async () => {
    const out = await kube.kubectl(["get", "events", "-n", "shop", "-o", "json"], { check: true });
    return (JSON.parse(out.stdout).items as EventItem[]).find((e) =>
      e.reason === reason && e.involvedObject.kind === "Pod" && e.involvedObject.name === pod
    );
  }, { timeoutMs: 20_000, intervalMs: 200 });
}

/** `yes` or `no` of `kubectl auth can-i` as the driver's ServiceAccount. */
async function canI(kube: KubeApiServer, args: string[]): Promise<string> {
  const out = await kube.kubectl(["auth", "can-i", ...args, `--as=${SA}`]);
  return out.stdout.trim();
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
    "driver as its ServiceAccount with the manifests' RBAC: Forbidden namespaces, the grant, ClusterTrustBundles",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-rbac-" });
    const kube = await startKubeApiServer();
    let driver: DriverProcess | undefined;
    let client: CsiClient | undefined;
    const target = (pod: string) => join(dir, "pods", pod, "mount");
    try {
      const cas = await Promise.all(
        ["spire", "team", "root", "signer-a", "signer-b", "root-2"].map((n) =>
          createCa(dir, `ca-${n}`, `RBAC test CA ${n}`)
        ),
      );
      const [spireCa, teamCa, rootCa, signerA, signerB, root2] = cas;
      await installCrds(kube, CRD);
      for (const ns of ["spire-cacerts", "spire", "shop", "team"]) {
        await applyObject(kube, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
      }
      await kube.kubectl(["apply", "-f", RBAC], { check: true });
      const secret = (ns: string, name: string, ca: CertificateFiles) => ({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { namespace: ns, name },
        data: { "ca.crt": btoa(ca.certPem) },
      });
      await applyObject(kube, secret("spire", "spire-ca-bundle", spireCa));
      await applyObject(kube, secret("team", "team-ca", teamCa));
      await applyObject(kube, bundle("root-bundle", rootCa));
      await applyObject(kube, bundle("example.com:demo:a", signerA, { team: "a" }));
      await applyObject(kube, bundle("example.com:demo:b", signerB, { team: "b" }));
      const spireRef = {
        apiGroup: "",
        kind: "Secret",
        namespace: "spire",
        name: "spire-ca-bundle",
      };
      const teamRef = { kind: "Secret", namespace: "team", name: "team-ca" };
      await applyObject(kube, caClassObject("shop", "trust", [spireRef]));
      await applyObject(kube, caClassObject("shop", "team-ca", [teamRef]));
      await applyObject(
        kube,
        caClassObject("shop", "bundles", [
          { apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle", name: "root-bundle" },
          {
            apiGroup: "certificates.k8s.io",
            kind: "ClusterTrustBundle",
            signerName: SIGNER,
            labelSelector: { matchLabels: { team: "a" } },
          },
        ]),
      );

      await t.step(
        "the manifests grant Secret reads in spire only, bundles cluster-wide",
        async () => {
          assert.equal(await canI(kube, ["list", "secrets", "-n", "spire"]), "yes");
          assert.equal(await canI(kube, ["watch", "configmaps", "-n", "spire"]), "yes");
          for (const ns of ["shop", "team", "kube-system", "spire-cacerts"]) {
            assert.equal(await canI(kube, ["list", "secrets", "-n", ns]), "no", ns);
            assert.equal(await canI(kube, ["get", "configmaps", "-n", ns]), "no", ns);
          }
          assert.equal(await canI(kube, ["list", "secrets", "--all-namespaces"]), "no");
          assert.equal(
            await canI(kube, ["watch", "clustertrustbundles.certificates.k8s.io"]),
            "yes",
          );
          assert.equal(
            await canI(kube, ["list", "caproviderclasses.cacerts.csi.cert-manager.io", "-A"]),
            "yes",
          );
          assert.equal(await canI(kube, ["create", "events", "-n", "shop"]), "yes");
        },
      );

      const kubeconfigPath = join(dir, "csi.kubeconfig");
      await driverKubeconfig(kube, kubeconfigPath);
      driver = await startDriverProcess({
        dir,
        kubeconfigPath,
        args: ["--allowed-ref-namespaces=spire,team", "--base-roots=none"],
      });
      client = new CsiClient(driver.endpoint);
      const detail = () => driver!.process.logTail();

      await t.step("a class reading the granted namespace publishes", async () => {
        await client!.publish(publishRequest("vol-web-1", target("web-1"), "web-1", "trust"));
        assert.equal(await storeFingerprints(target("web-1")), caFingerprints(spireCa));
      });

      await t.step(
        "a class reading a namespace without the RoleBinding: PERMISSION_DENIED + Event",
        async () => {
          const refused = await client!.publish(
            publishRequest("vol-web-2", target("web-2"), "web-2", "team-ca"),
          ).then(() => undefined, (e: unknown) => e);
          assert.ok(refused instanceof CsiCallError, String(refused));
          assert.equal(refused.code, status.PERMISSION_DENIED, refused.details);
          assert.ok(refused.details.includes(`\`${GRANT}\``), refused.details);
          assert.match(
            refused.details,
            /Secret team\/team-ca \(from CAProviderClass shop\/team-ca\)/,
          );
          const event = await eventFor(kube, "web-2", "TrustStoreSourceForbidden");
          assert.equal(event.type, "Warning");
          assert.match(event.message, /in namespace "team"/);
          // The API server's own answer, whose user the command grants.
          assert.match(
            event.message,
            /HTTP 403: .*User "system:serviceaccount:spire-cacerts:spire-cacerts-csi" cannot list resource "secrets"/,
          );
          assert.ok(event.message.includes(`\`${GRANT}\``), event.message);
        },
      );

      await t.step(
        "a volume whose class gains a Forbidden ref keeps its store, republish too",
        async () => {
          await applyObject(kube, caClassObject("shop", "trust", [spireRef, teamRef]));
          const event = await eventFor(kube, "web-1", "TrustStoreUpdateFailed");
          assert.equal(event.type, "Warning");
          assert.ok(event.message.includes(`\`${GRANT}\``), event.message);
          assert.match(event.message, /^Keeping the last good trust store: /);
          await client!.publish(publishRequest("vol-web-1", target("web-1"), "web-1", "trust"));
          assert.equal(await storeFingerprints(target("web-1")), caFingerprints(spireCa));
          const stats = await client!.stats("vol-web-1", target("web-1"));
          assert.equal(stats.volumeCondition?.abnormal, true);
        },
      );

      await t.step(
        "running the command the Event names grants it: the volume and a new publish follow",
        async () => {
          const event = await eventFor(kube, "web-2", "TrustStoreSourceForbidden");
          const command = event.message.match(/`kubectl ([^`]+)`/)?.[1];
          assert.ok(command, event.message);
          await kube.kubectl(command.split(" "), { check: true });
          assert.equal(await canI(kube, ["list", "secrets", "-n", "team"]), "yes");
          // The watch of the refused Secret retries with backoff; no republish is needed.
          await waitFor(
            "web-1 reads team/team-ca",
            async () =>
              await storeFingerprints(target("web-1")) === caFingerprints(spireCa, teamCa),
            {
              timeoutMs: 30_000,
              detail,
            },
          );
          await client!.publish(publishRequest("vol-web-2", target("web-2"), "web-2", "team-ca"));
          assert.equal(await storeFingerprints(target("web-2")), caFingerprints(teamCa));
          const stats = await client!.stats("vol-web-1", target("web-1"));
          assert.equal(stats.volumeCondition?.abnormal, false);
        },
      );

      await t.step("ClusterTrustBundles by name and by signer + labels publish", async () => {
        await client!.publish(publishRequest("vol-web-3", target("web-3"), "web-3", "bundles"));
        assert.equal(await storeFingerprints(target("web-3")), caFingerprints(rootCa, signerA));
      });

      await t.step("bundle changes reach the mounted store", async () => {
        await applyObject(kube, bundle("example.com:demo:b", signerB, { team: "a" }));
        await waitFor(
          "web-3 gains the relabelled bundle",
          async () =>
            await storeFingerprints(target("web-3")) === caFingerprints(rootCa, signerA, signerB),
          {
            timeoutMs: 20_000,
            detail,
          },
        );
        await applyObject(kube, bundle("root-bundle", root2));
        await waitFor(
          "web-3 follows root-bundle's new content",
          async () =>
            await storeFingerprints(target("web-3")) === caFingerprints(root2, signerA, signerB),
          {
            timeoutMs: 20_000,
            detail,
          },
        );
        await kube.kubectl(["delete", "clustertrustbundle", "example.com:demo:a"], { check: true });
        await waitFor(
          "web-3 drops the deleted bundle",
          async () => await storeFingerprints(target("web-3")) === caFingerprints(root2, signerB),
          { timeoutMs: 20_000, detail },
        );
      });

      for (const pod of ["web-1", "web-2", "web-3"]) {
        await client.unpublish(`vol-${pod}`, target(pod));
      }
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
