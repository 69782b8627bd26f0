/**
 * The README's "Testing the Setup" on a real single-node Kubernetes (tests/harness/cluster.ts),
 * deployed the way the README says: the images are built from `images/*.Containerfile` (buildah,
 * tests/harness/containerfile_images.ts) and the manifests go in with one `kubectl apply -k
 * manifests` on a fresh cluster. The only object made beforehand is the environment's: a hostPath
 * PersistentVolume for SPIRE Server's claim (tests/harness/fixtures/spire_server_data_pv.yaml),
 * as a bare node has no provisioner. No CRD is applied first and no pod is deleted or restarted to
 * help: everything must converge.
 *
 * The one difference from the release images: no `denort` is reachable here, so the build stage's
 * `scripts/build.ts` runs with `--allow-bundle-fallback` and ships the pinned Deno with a bundle at
 * `/usr/local/bin/<program>` instead of a `deno compile` binary.
 *
 * 1. SPIRE Server and Agent become ready; the agent attests; ClusterSPIFFEIDs (kept by the
 *    webhook's controller once their CRD is served) produce entries.
 * 2. The driver registers with kubelet; the webhook serves a SPIRE-issued certificate.
 * 3. The client pod is mutated; inside the running container the OS store holds the SPIRE CA;
 *    `kubectl get caproviderclass -A` shows the classes Ready with their certificate count.
 * 4. `kubectl logs` shows the server's certificate with Not After advancing, in both
 *    `--system-certs` modes, in the Go client's line shape.
 * 5. A SPIRE CA change reaches the running pod's store without a restart, also after the driver
 *    pod was restarted.
 * 6. Deleting the workloads unpublishes their volumes and leaves nothing on the node.
 * 7. A rolling restart of the webhook Deployment while labelled pods keep being created (server-
 *    side dry runs, and real pods bound to a node that does not exist so they never run) rejects
 *    none of them and mutates every one.
 * 8. The default path reads no Secret: the example namespace's managed class references the
 *    ClusterTrustBundle the webhook's controller publishes, `kubectl get clustertrustbundle`
 *    shows it with SPIRE's CA, and the driver's ServiceAccount may not read Secrets or ConfigMaps
 *    in `spiffe-demo` or `default` while the client has its store. A pod with Kubernetes' own
 *    projection of that bundle (by name, and by signer and labels;
 *    tests/harness/fixtures/ctb_projection_pod.yaml) sees SPIRE's CA, and a CA SPIRE adds
 *    (`spire-server localauthority x509 prepare`) reaches the projection by signer and labels and
 *    the CSI store. (Kubelet keeps a signed bundle read by name cached for 5 minutes,
 *    kubernetes/kubernetes#141439: that projection is checked before the change only.)
 * 9. Trust restart (tests/harness/fixtures/roots_once_clients.yaml): two Deployments of a Go
 *    client that loads the system roots once and calls the webhook's Service. SPIRE prepares a
 *    CA and a second class of the annotated one gains a CA inside the settle delay: the annotated
 *    Deployment is rolled out once (one new ReplicaSet, one Event naming both CAs), the other is
 *    not. After `localauthority x509 activate` and `taint`, the webhook serves an SVID of the new
 *    CA: the restarted client trusts it, the other fails with "unknown authority". The extra
 *    class then loses its CA again: a removal alone rolls nothing out.
 */

import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { connect } from "node:tls";
import { join } from "node:path";
import {
  KUBELET_DIR,
  type LocalCluster,
  needsCluster,
  NODE_NAME,
  startCluster,
} from "./harness/cluster.ts";
import {
  buildLocalImages,
  COREDNS_IMAGE,
  importImages,
  needsImageTools,
  PAUSE_IMAGE,
  ROOTS_ONCE_CLIENT_IMAGE,
} from "./harness/images.ts";
import { waitFor } from "./harness/process.ts";
import { createCa } from "./harness/pki.ts";
import { createHash, X509Certificate } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";

const ROOT = new URL("..", import.meta.url).pathname;
const SPIRE_SOCKET = "/tmp/spire-server/private/api.sock";
const DRIVER_STATE_DIR = "/var/lib/spire-cacerts";
const PV_DIR = "/var/lib/spire-cacerts-local/spire-server-data";
const STORE = "/etc/ssl/certs/ca-certificates.crt";
/** What the webhook's controller publishes SPIRE's bundle as (trust domain example.org). */
const CTB_NAME = "cacerts.csi.cert-manager.io:spire-example.org:bundle";
const CTB_SIGNER = "cacerts.csi.cert-manager.io/spire-example.org";
/** The CSI driver's identity (manifests/csi/rbac.yaml). */
const DRIVER_SA = "system:serviceaccount:spire-cacerts:spire-cacerts-csi";
/** The projected ClusterTrustBundle files of fixtures/ctb_projection_pod.yaml. */
const BY_NAME = "/var/run/ctb/by-name/ca.pem";
const BY_SIGNER = "/var/run/ctb/by-signer/ca.pem";
const PROJECTED = [BY_NAME, BY_SIGNER];
/** Go's log.LstdFlags prefix the client puts on every line. */
const GO_LOG = String.raw`\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `;
const REPORT = new RegExp(`^${GO_LOG}Certificate Information:$`, "m");
const SUBJECT = new RegExp(`^${GO_LOG} {2}Subject: CN=server-service, O=SPIRE, C=US$`, "m");
const NOT_AFTER = new RegExp(`^${GO_LOG} {2}Not After: (\\S+)$`, "gm");
const REQUEST = new RegExp(`^${GO_LOG}Making request #\\d+$`, "m");
const startLine = (systemCerts: boolean) =>
  new RegExp(`^${GO_LOG}Using ${systemCerts ? "system certificate" : "SPIRE"} trust store$`, "m");

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const log = (message: string) => console.log(`[e2e ${elapsed()}] ${message}`);

/** Base64 bodies of the PEM certificates in `text` (whitespace removed), for comparison. */
function pemBodies(text: string): string[] {
  const bodies: string[] = [];
  const re = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  for (const match of text.matchAll(re)) bodies.push(match[1].replace(/\s+/g, ""));
  return bodies;
}

/** Two lists of PEM bodies hold the same certificates (order and duplicates aside). */
function same(a: string[], b: string[]): boolean {
  const [x, y] = [[...new Set(a)].sort(), [...new Set(b)].sort()];
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

const escapeRe = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

class E2e {
  constructor(readonly cluster: LocalCluster) {}

  async k(args: string[], stdin?: string): Promise<string> {
    return (await this.cluster.kubectl(args, { check: true, stdin })).stdout;
  }

  async jsonpath(args: string[], path: string): Promise<string> {
    return (await this.k(["get", ...args, "-o", `jsonpath=${path}`])).trim();
  }

  spireServer(args: string[]): Promise<string> {
    return this.k([
      "exec",
      "-n",
      "spire",
      "spire-server-0",
      "-c",
      "spire-server",
      "--",
      "/opt/spire/bin/spire-server",
      ...args,
      "-socketPath",
      SPIRE_SOCKET,
    ]);
  }

  /** The SPIRE trust bundle's roots, as SPIRE Server reports them. */
  async spireRoots(): Promise<string[]> {
    return pemBodies(await this.spireServer(["bundle", "show", "-format", "pem"]));
  }

  /** The OS trust store inside a running client container, read there with the image's Deno. */
  async clientStore(pod: string): Promise<string[]> {
    return pemBodies(
      await this.k([
        "exec",
        "-n",
        "spiffe-demo",
        pod,
        "-c",
        "client",
        "--",
        "/usr/local/bin/deno",
        "eval",
        `console.log(Deno.readTextFileSync(${JSON.stringify(STORE)}))`,
      ]),
    );
  }

  /** The roots in SPIRE's bundle ConfigMap, as its k8sbundle notifier wrote them. */
  async spireBundleConfigMap(): Promise<string[]> {
    return pemBodies(
      await this.jsonpath(
        ["configmap", "spire-bundle", "-n", "spire"],
        String.raw`{.data.bundle\.crt}`,
      ),
    );
  }

  /** The roots of the ClusterTrustBundle the webhook's controller publishes. */
  async publishedBundle(): Promise<string[]> {
    return pemBodies(await this.jsonpath(["clustertrustbundle", CTB_NAME], "{.spec.trustBundle}"));
  }

  /** A projected ClusterTrustBundle file of the ctb-projection pod, read there with Deno. */
  async projected(path: string): Promise<string[]> {
    return pemBodies(
      await this.k([
        "exec",
        "-n",
        "spiffe-demo",
        "ctb-projection",
        "-c",
        "reader",
        "--",
        "/usr/local/bin/deno",
        "eval",
        `console.log(Deno.readTextFileSync(${JSON.stringify(path)}))`,
      ]),
    );
  }

  /** Waits for a pod matching `selector` whose containers are all ready; returns its name. */
  waitReady(namespace: string, selector: string, timeoutMs = 180_000): Promise<string> {
    return waitFor(`ready pod ${namespace}/${selector}`, async () => {
      const list = JSON.parse(
        await this.k(["get", "pods", "-n", namespace, "-l", selector, "-o", "json"]),
      ) as {
        items: {
          metadata: { name: string; deletionTimestamp?: string };
          status: { containerStatuses?: { ready: boolean }[] };
        }[];
      };
      const ready = list.items.find((pod) =>
        !pod.metadata.deletionTimestamp && (pod.status.containerStatuses ?? []).length > 0 &&
        pod.status.containerStatuses!.every((c) => c.ready)
      );
      return ready?.metadata.name;
    }, { timeoutMs, intervalMs: 2_000, detail: () => `at ${elapsed()}` }).catch(async (error) => {
      // Say why: the pods' recent events (mount failures, crash loops, admission errors).
      const events = await this.cluster.kubectl([
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector=type=Warning",
        "-o",
        "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
      ]);
      throw new Error(`${error.message}\nwarning events in ${namespace}:\n${events.stdout}`);
    });
  }

  /**
   * What a user would look at when something does not converge: every pod with its state, the
   * Warning events, and the last log lines of every container in the project's namespaces.
   */
  async diagnose(): Promise<string> {
    const out: string[] = [];
    const k = async (args: string[]) => {
      const r = await this.cluster.kubectl(args);
      out.push(`$ kubectl ${args.join(" ")}\n${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    await k(["get", "pods", "-A", "-o", "wide"]);
    await k(["get", "events", "-A", "--field-selector=type=Warning"]);
    for (const namespace of ["spire", "spire-cacerts", "spiffe-demo"]) {
      const pods = (await this.cluster.kubectl([
        "get",
        "pods",
        "-n",
        namespace,
        "-o",
        "jsonpath={.items[*].metadata.name}",
      ])).stdout.split(/\s+/).filter(Boolean);
      for (const pod of pods) {
        await k(["logs", "-n", namespace, pod, "--all-containers", "--tail=15", "--prefix"]);
      }
    }
    return out.join("\n");
  }

  /** Server certificate Not After values the client logged, in order. */
  async notAfters(pod: string): Promise<{ text: string; values: string[] }> {
    const text = await this.k(["logs", "-n", "spiffe-demo", pod, "-c", "client"]);
    const values = [...text.matchAll(NOT_AFTER)].map((m) => m[1]);
    return { text, values };
  }

  /** Point 4 for one pod: certificate information with at least two increasing Not After. */
  async assertRotationsLogged(pod: string, systemCerts: boolean): Promise<string[]> {
    const seen = await waitFor(`client ${pod} logging two server SVIDs`, async () => {
      const { text, values } = await this.notAfters(pod);
      const distinct = [...new Set(values)];
      return startLine(systemCerts).test(text) && REQUEST.test(text) && REPORT.test(text) &&
          SUBJECT.test(text) && distinct.length >= 2
        ? distinct
        : undefined;
    }, { timeoutMs: 90_000, intervalMs: 3_000 });
    const times = seen.map((v) => Date.parse(v));
    for (let i = 1; i < times.length; i++) assert.ok(times[i] > times[i - 1], seen.join(", "));
    // The label selector the issue names finds the same output.
    const bySelector = await this.k([
      "logs",
      "-l",
      "app=client",
      "-n",
      "spiffe-demo",
      "-c",
      "client",
    ]);
    // `kubectl logs -l` shows the last 10 lines: always one whole request and report.
    assert.match(bySelector, REPORT);
    assert.match(bySelector, SUBJECT);
    return seen;
  }
}

/** The serving certificate of the webhook's Service, verified against SPIRE's bundle. */
function webhookCertificate(ip: string, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: ip,
      port: 443,
      servername: "spire-cacerts-webhook.spire-cacerts.svc",
      ca: caPem,
      timeout: 5_000,
    }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert.subjectaltname ?? "");
    });
    socket.on("error", reject);
    socket.on("timeout", () => socket.destroy(new Error("TLS connect timed out")));
  });
}

function toPem(bodies: string[]): string {
  return bodies.map((b) =>
    `-----BEGIN CERTIFICATE-----\n${b.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`
  ).join("");
}

/** Lower-case hex SHA-256 of a certificate's DER, from a PEM body or a whole PEM. */
function fingerprint(cert: string): string {
  if (cert.includes("-----BEGIN")) {
    return new X509Certificate(cert).fingerprint256.replaceAll(":", "").toLowerCase();
  }
  return createHash("sha256").update(Uint8Array.fromBase64(cert)).digest("hex");
}

/** `Authority ID` of the active and the prepared X.509 authority in `localauthority x509 show`. */
function authorityIds(show: string): { active?: string; prepared?: string } {
  const id = (section: string) =>
    new RegExp(`${section} X\\.509 authority:\\n\\s+Authority ID: (\\S+)`).exec(show)?.[1];
  return { active: id("Active"), prepared: id("Prepared") };
}

const ROOTS_ONCE_FIXTURE = join(ROOT, "tests/harness/fixtures/roots_once_clients.yaml");
const EXTRA_BUNDLE = "spiffe-demo-extra";
const TRUSTED = "cacerts\\.spiffe\\.io/trusted-fingerprints";
const RESTARTED_AT = "cacerts\\.spiffe\\.io/trust-restarted-at";
/** The webhook's default --trust-restart-settle, which the manifests keep. */
const SETTLE_MS = 30_000;

Deno.test({
  name: "cluster e2e: images from the Containerfiles, one kubectl apply -k, points 1-9 converge",
  ignore: needsCluster().ignore || needsImageTools().ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const images = [
      ...await buildLocalImages({ log }),
      // The trust-restart step's Go client (a test workload, not a product image).
      ...await buildLocalImages({ log, refs: [ROOTS_ONCE_CLIENT_IMAGE] }),
    ];
    log(`${images.length} images built`);
    const cluster = await startCluster({
      sandboxImage: PAUSE_IMAGE,
      dnsImage: COREDNS_IMAGE,
      hostPaths: [DRIVER_STATE_DIR, "/run/spire", "/var/lib/spire-cacerts-local"],
      prepareRuntime: (containerdAddress) => importImages(images, { containerdAddress }),
      log,
    });
    const e = new E2e(cluster);
    try {
      // The overlay's PersistentVolume directory, owned by SPIRE Server's user (see its README).
      await Deno.mkdir(PV_DIR, { recursive: true, mode: 0o700 });
      await Deno.chown(PV_DIR, 1000, 1000);
      // The README's one command, once, on a cluster that has never seen these objects.
      await e.k(["apply", "-f", join(ROOT, "tests/harness/fixtures/spire_server_data_pv.yaml")]);
      log("kubectl apply -k manifests");
      await e.k(["apply", "-k", join(ROOT, "manifests")]);

      const ok1 = await t.step(
        "1. SPIRE ready, agent attested, entries from ClusterSPIFFEIDs",
        async () => {
          await e.waitReady("spire", "app.kubernetes.io/name=spire-server");
          await e.waitReady("spire", "app.kubernetes.io/name=spire-agent");
          const agents = await waitFor("an attested agent", async () => {
            const out = await e.spireServer(["agent", "list"]);
            return out.includes("k8s_psat/spire-cacerts/") ? out : undefined;
          }, { timeoutMs: 60_000, intervalMs: 2_000 });
          assert.match(agents, /Attestation type\s*:\s*k8s_psat/);
          await waitFor("entries for webhook, server and client", async () => {
            const out = await e.spireServer(["entry", "show"]);
            return ["webhook", "server", "client"].every((w) =>
              out.includes(`spiffe://example.org/workload/${w}`)
            );
          }, { timeoutMs: 90_000, intervalMs: 2_000 });
          // The pinned spire-controller-manager is the one running.
          const pin = /name: ghcr\.io\/spiffe\/spire-controller-manager\s+newTag: "([^"]+)"/
            .exec(await Deno.readTextFile(join(ROOT, "images/kustomization.yaml")))?.[1];
          assert.ok(pin, "images/kustomization.yaml pins spire-controller-manager");
          const running = await e.jsonpath(
            ["pod", "spire-server-0", "-n", "spire"],
            "{.status.containerStatuses[*].image}",
          );
          assert.ok(running.includes(`spire-controller-manager:${pin}`), running);
          log(`SPIRE ready (spire-controller-manager ${pin})`);
        },
      );
      if (!ok1) return;

      const ok2 = await t.step(
        "2. driver registered with kubelet, webhook ready with a SPIRE certificate",
        async () => {
          await waitFor(
            "CSINode lists the driver",
            async () =>
              (await e.jsonpath(["csinode", NODE_NAME], "{.spec.drivers[*].name}")).includes(
                DRIVER_NAME,
              ),
            { timeoutMs: 120_000, intervalMs: 2_000 },
          ).catch(async (error) => {
            throw new Error(`${error.message}\n${await e.diagnose()}`);
          });
          await waitFor("webhook Deployment 2/2 ready", async () =>
            await e.jsonpath(
              ["deployment", "spire-cacerts-webhook", "-n", "spire-cacerts"],
              "{.status.readyReplicas}",
            ) === "2", { timeoutMs: 240_000, intervalMs: 2_000 }).catch(async (error) => {
              throw new Error(`${error.message}\n${await e.diagnose()}`);
            });
          const roots = await e.spireRoots();
          const caBundle = await waitFor("caBundle from SPIRE's notifier", async () => {
            const value = await e.jsonpath(
              ["mutatingwebhookconfiguration", "spire-cacerts-webhook"],
              "{.webhooks[0].clientConfig.caBundle}",
            );
            return value || undefined;
          }, { timeoutMs: 60_000, intervalMs: 2_000 });
          assert.deepEqual(pemBodies(atob(caBundle)).sort(), [...roots].sort());
          const ip = await e.jsonpath(
            ["service", "spire-cacerts-webhook", "-n", "spire-cacerts"],
            "{.spec.clusterIP}",
          );
          const san = await webhookCertificate(ip, toPem(roots));
          assert.ok(san.includes("URI:spiffe://example.org/workload/webhook"), san);
          assert.ok(san.includes("DNS:spire-cacerts-webhook.spire-cacerts.svc"), san);
          log("driver registered, webhook ready");
        },
      );
      if (!ok2) return;

      let clientPod = "";
      const ok3 = await t.step(
        "3. client mutated, the store in the running container holds the SPIRE CA",
        async () => {
          // The examples were created in the same apply, before the webhook served: their
          // ReplicaSets retry until the webhook admits (and mutates) them.
          clientPod = await e.waitReady("spiffe-demo", "app=client", 300_000);
          await e.waitReady("spiffe-demo", "app=server", 300_000);
          const volumes = JSON.parse(
            await e.jsonpath(["pod", clientPod, "-n", "spiffe-demo"], "{.spec.volumes}"),
          ) as { csi?: { driver: string } }[];
          assert.ok(volumes.some((v) => v.csi?.driver === DRIVER_NAME), JSON.stringify(volumes));
          const roots = await e.spireRoots();
          const store = await e.clientStore(clientPod);
          assert.ok(store.length > roots.length, `store has ${store.length} certificates`);
          for (const root of roots) {
            assert.ok(store.includes(root), "SPIRE root missing from the store");
          }
          log(
            `client ${clientPod}: store has ${store.length} certificates incl. ${roots.length} SPIRE root(s)`,
          );
          // Status as a user reads it: the default table of every namespace's class.
          const table = await waitFor("spiffe-demo/spire-ca Ready in kubectl get", async () => {
            const out = await e.k(["get", "caproviderclass", "-A"]);
            const [header, ...rows] = out.trim().split("\n");
            const columns = header.trim().split(/\s{2,}/);
            const row = rows.map((r) => r.trim().split(/\s{2,}/))
              .find((r) => r[0] === "spiffe-demo" && r[1] === "spire-ca");
            if (!row) return undefined;
            const cell = (name: string) => row[columns.indexOf(name)];
            return cell("READY") === "True" && Number(cell("CERTIFICATES")) === roots.length
              ? out
              : undefined;
          }, { timeoutMs: 60_000, intervalMs: 2_000 });
          log(`kubectl get caproviderclass -A:\n${table}`);
        },
      );
      if (!ok3) {
        return;
      }

      await t.step(
        "4a. kubectl logs: certificate information, Not After advancing (--system-certs=true)",
        async () => {
          const seen = await e.assertRotationsLogged(clientPod, true);
          log(`--system-certs=true: Not After ${seen.join(", ")}`);
        },
      );

      await t.step(
        "5. SPIRE CA change reaches the running pod; again after a driver restart",
        async () => {
          const uid = await e.jsonpath(["pod", clientPod, "-n", "spiffe-demo"], "{.metadata.uid}");
          const restarts = await e.jsonpath(
            ["pod", clientPod, "-n", "spiffe-demo"],
            "{.status.containerStatuses[*].restartCount}",
          );
          const caChange = async (label: string) => {
            const before = new Set(await e.spireRoots());
            await e.spireServer(["localauthority", "x509", "prepare"]);
            const added = (await e.spireRoots()).filter((r) => !before.has(r));
            assert.equal(added.length, 1, "prepare adds one root to the bundle");
            const t0 = Date.now();
            await waitFor(
              `new SPIRE root in the client's store (${label})`,
              async () => (await e.clientStore(clientPod)).includes(added[0]),
              {
                timeoutMs: 120_000,
                intervalMs: 2_000,
              },
            );
            log(`${label}: new root in the running pod's store after ${Date.now() - t0} ms`);
          };
          await caChange("CA change");
          const driverPod = await e.waitReady(
            "spire-cacerts",
            "app.kubernetes.io/name=spire-cacerts-csi",
          );
          await e.k(["delete", "pod", driverPod, "-n", "spire-cacerts"]);
          const newDriver = await e.waitReady(
            "spire-cacerts",
            "app.kubernetes.io/name=spire-cacerts-csi",
          );
          assert.notEqual(newDriver, driverPod);
          await caChange("CA change after driver restart");
          assert.equal(
            await e.jsonpath(["pod", clientPod, "-n", "spiffe-demo"], "{.metadata.uid}"),
            uid,
          );
          assert.equal(
            await e.jsonpath(
              ["pod", clientPod, "-n", "spiffe-demo"],
              "{.status.containerStatuses[*].restartCount}",
            ),
            restarts,
          );
        },
      );

      await t.step(
        "8. default path on ClusterTrustBundles: no Secret read in workload namespaces; native " +
          "projection and CSI store both follow a SPIRE CA change",
        async () => {
          // The managed class of the example namespace names the published bundle, nothing else.
          const refs = JSON.parse(
            await e.jsonpath(["caproviderclass", "spire-ca", "-n", "spiffe-demo"], "{.spec.refs}"),
          );
          assert.deepEqual(refs, [{
            apiGroup: "certificates.k8s.io",
            kind: "ClusterTrustBundle",
            name: CTB_NAME,
          }]);
          // `kubectl get clustertrustbundle` lists it under SPIRE's signer, holding SPIRE's CA.
          const table = await e.k(["get", "clustertrustbundle"]);
          assert.match(
            table,
            new RegExp(`^${escapeRe(CTB_NAME)}\\s+${escapeRe(CTB_SIGNER)}\\s`, "m"),
          );
          await waitFor("the ClusterTrustBundle equal to SPIRE's bundle ConfigMap", async () => {
            const [published, spire] = [await e.publishedBundle(), await e.spireBundleConfigMap()];
            return published.length > 0 && same(published, spire);
          }, { timeoutMs: 60_000, intervalMs: 2_000 });
          log(`kubectl get clustertrustbundle:\n${table}`);

          // The driver's ServiceAccount reads no Secret or ConfigMap outside spire (positive
          // controls: its RoleBinding in spire and the ClusterTrustBundles it resolves).
          const canI = async (verb: string, resource: string, namespace?: string) =>
            (await cluster.kubectl([
              "auth",
              "can-i",
              verb,
              resource,
              ...(namespace ? ["-n", namespace] : []),
              `--as=${DRIVER_SA}`,
            ])).stdout.trim();
          for (const namespace of ["spiffe-demo", "default"]) {
            for (const resource of ["secrets", "configmaps"]) {
              for (const verb of ["get", "list", "watch"]) {
                assert.equal(
                  await canI(verb, resource, namespace),
                  "no",
                  `${verb} ${resource} -n ${namespace}`,
                );
              }
            }
          }
          assert.equal(await canI("get", "secrets", "spire"), "yes", "get secrets -n spire");
          assert.equal(await canI("watch", "clustertrustbundles.certificates.k8s.io"), "yes");
          // ... and the demo client has its trust store all the same.
          const roots = await e.spireRoots();
          const store = await e.clientStore(clientPod);
          assert.ok(roots.every((r) => store.includes(r)), "SPIRE roots missing from the store");

          // Kubernetes' own projection of the same bundle, in a pod the webhook does not touch.
          const image = await e.jsonpath(
            ["deployment", "client", "-n", "spiffe-demo"],
            '{.spec.template.spec.containers[?(@.name=="client")].image}',
          );
          const fixture = await Deno.readTextFile(
            join(ROOT, "tests/harness/fixtures/ctb_projection_pod.yaml"),
          );
          const manifest = fixture.replace(
            /^(\s+image: )ghcr\.io\/spire-cacerts\/workloads$/m,
            `$1${image}`,
          );
          assert.notEqual(manifest, fixture, "fixture names the workloads image");
          await e.k(["apply", "-f", "-"], manifest);
          try {
            await e.waitReady("spiffe-demo", "app=ctb-projection", 120_000);
            const volumes = JSON.parse(
              await e.jsonpath(["pod", "ctb-projection", "-n", "spiffe-demo"], "{.spec.volumes}"),
            ) as { csi?: unknown }[];
            assert.ok(volumes.every((v) => !v.csi), "the projection pod has no CSI volume");
            for (const file of PROJECTED) {
              assert.ok(same(await e.projected(file), await e.spireBundleConfigMap()), file);
            }
            log(`native projection: ${PROJECTED.join(", ")} equal to spire/spire-bundle`);

            // SPIRE adds a CA to its bundle (the next X.509 authority, prepared, not active).
            const before = new Set(await e.spireRoots());
            await e.spireServer(["localauthority", "x509", "prepare"]);
            const added = (await e.spireRoots()).filter((r) => !before.has(r));
            assert.equal(added.length, 1, "prepare adds one root to the bundle");
            const t0 = Date.now();
            // The projection by signer name and labels, and the CSI store. Not the projection by
            // name: kubelet (up to 1.37 at least) drops its cache entry of a bundle read by name
            // only when the bundle has no signer, so a signed bundle read by name stays as it was
            // until the entry's 5-minute TTL (kubernetes/kubernetes#141439) -- the reason the
            // README says to project by signerName and labelSelector.
            let last: Record<string, boolean> = {};
            await waitFor(
              "the new SPIRE root in the projection by signer and the CSI store",
              async () => {
                last = {
                  "ConfigMap spire/spire-bundle": (await e.spireBundleConfigMap()).includes(
                    added[0],
                  ),
                  [`ClusterTrustBundle ${CTB_NAME}`]: (await e.publishedBundle()).includes(
                    added[0],
                  ),
                  [BY_SIGNER]: (await e.projected(BY_SIGNER)).includes(added[0]),
                  [`CSI store of ${clientPod}`]: (await e.clientStore(clientPod)).includes(
                    added[0],
                  ),
                };
                return Object.values(last).every(Boolean);
              },
              { timeoutMs: 150_000, intervalMs: 3_000, detail: () => JSON.stringify(last) },
            );
            const byName = (await e.projected(BY_NAME)).includes(added[0]);
            log(
              `new root in ${BY_SIGNER} and the CSI store after ${Date.now() - t0} ms ` +
                `(${BY_NAME}: ${byName ? "has it too" : "not yet, kubelet's by-name cache"})`,
            );
            const spire = await e.spireBundleConfigMap();
            assert.ok(same(await e.projected(BY_SIGNER), spire), BY_SIGNER);
            const store = await e.clientStore(clientPod);
            assert.ok(spire.every((r) => store.includes(r)), "SPIRE roots missing from the store");
          } finally {
            await e.k([
              "delete",
              "pod",
              "ctb-projection",
              "-n",
              "spiffe-demo",
              "--ignore-not-found",
              "--wait=true",
            ]);
          }
        },
      );

      await t.step("4b. kubectl logs with --system-certs=false", async () => {
        const args = JSON.parse(
          await e.jsonpath(
            ["deployment", "client", "-n", "spiffe-demo"],
            "{.spec.template.spec.containers[0].args}",
          ),
        ) as string[];
        const index = args.indexOf("--system-certs=true");
        assert.ok(index >= 0, args.join(" "));
        await e.k([
          "patch",
          "deployment",
          "client",
          "-n",
          "spiffe-demo",
          "--type=json",
          `-p=${
            JSON.stringify([{
              op: "replace",
              path: `/spec/template/spec/containers/0/args/${index}`,
              value: "--system-certs=false",
            }])
          }`,
        ]);
        await e.k([
          "rollout",
          "status",
          "deployment/client",
          "-n",
          "spiffe-demo",
          "--timeout=180s",
        ]);
        const pod = await e.waitReady("spiffe-demo", "app=client");
        const podArgs = await e.jsonpath(
          ["pod", pod, "-n", "spiffe-demo"],
          "{.spec.containers[0].args}",
        );
        assert.ok(podArgs.includes("--system-certs=false"), podArgs);
        const seen = await e.assertRotationsLogged(pod, false);
        log(`--system-certs=false: Not After ${seen.join(", ")}`);
      });

      await t.step(
        "6. deleting the workloads unpublishes their volumes and leaves nothing",
        async () => {
          const uids = (await e.jsonpath(["pods", "-n", "spiffe-demo"], "{.items[*].metadata.uid}"))
            .split(/\s+/).filter(Boolean);
          assert.ok(uids.length >= 2, uids.join(" "));
          await e.k([
            "delete",
            "deployment",
            "client",
            "server",
            "-n",
            "spiffe-demo",
            "--wait=true",
          ]);
          await waitFor(
            "spiffe-demo pods gone",
            async () =>
              (await e.jsonpath(["pods", "-n", "spiffe-demo"], "{.items[*].metadata.name}")) === "",
            {
              timeoutMs: 120_000,
              intervalMs: 2_000,
            },
          );
          const leftOnNode = async () => {
            const mountinfo = await Deno.readTextFile("/proc/self/mountinfo");
            const present = (path: string) => {
              try {
                Deno.statSync(path);
                return true;
              } catch {
                return false;
              }
            };
            return [
              ...uids.filter((uid) => mountinfo.includes(uid)).map((uid) => `mount of pod ${uid}`),
              ...uids.filter((uid) => present(join(KUBELET_DIR, "pods", uid))).map((uid) =>
                `pod directory ${uid}`
              ),
              ...[...Deno.readDirSync(join(DRIVER_STATE_DIR, "volumes"))].map((f) =>
                `record ${f.name}`
              ),
            ];
          };
          await waitFor(
            "no volume left on the node",
            async () => (await leftOnNode()).length === 0,
            {
              timeoutMs: 90_000,
              intervalMs: 2_000,
              detail: () => "",
            },
          ).catch(async (error) => {
            throw new Error(`${error.message}; left: ${(await leftOnNode()).join(", ")}`);
          });
          log("workloads deleted: no mounts, pod directories or volume records left");
        },
      );

      await t.step(
        "7. rolling restart of the webhook while labelled pods are created: none rejected",
        async () => {
          // Every webhook pod, terminating ones included.
          const webhookPods = async () =>
            (await e.jsonpath(
              ["pods", "-n", "spire-cacerts", "-l", "app.kubernetes.io/name=spire-cacerts-webhook"],
              "{.items[*].metadata.name}",
            )).split(/\s+/).filter(Boolean);
          const before = await webhookPods();
          assert.equal(before.length, 2, before.join(" "));
          // Real pods are bound to a node that does not exist: stored, never run.
          const pod = (name: string, real: boolean) =>
            JSON.stringify({
              apiVersion: "v1",
              kind: "Pod",
              metadata: { name, namespace: "spiffe-demo", labels: { [INJECT_LABEL]: "true" } },
              spec: {
                ...(real ? { nodeName: "no-such-node" } : {}),
                containers: [{ name: "app", image: "registry.invalid/app:1" }],
              },
            });
          const failures: string[] = [];
          const created: string[] = [];
          let attempts = 0;
          const createOne = async (real: boolean) => {
            const name = `rollout-${real ? "real" : "dry"}-${++attempts}`;
            const r = await cluster.kubectl([
              "create",
              ...(real ? [] : ["--dry-run=server"]),
              "-o",
              "json",
              "-f",
              "-",
            ], { stdin: pod(name, real) });
            if (r.code !== 0) {
              failures.push(`${elapsed()} ${name}: ${r.stderr.trim()}`);
              return;
            }
            if (real) created.push(name);
            const stored = JSON.parse(r.stdout) as {
              spec: {
                volumes?: { csi?: { driver: string } }[];
                containers: { volumeMounts?: { name: string }[] }[];
              };
            };
            const volume = (stored.spec.volumes ?? []).some((v) => v.csi?.driver === DRIVER_NAME);
            const mounted = stored.spec.containers.every((c) =>
              (c.volumeMounts ?? []).some((m) => m.name === "spire-cacerts")
            );
            if (!volume || !mounted) failures.push(`${name} admitted unmutated: ${r.stdout}`);
          };
          await e.k([
            "rollout",
            "restart",
            "deployment/spire-cacerts-webhook",
            "-n",
            "spire-cacerts",
          ]);
          let rolledOut = false;
          const status = cluster.kubectl([
            "rollout",
            "status",
            "deployment/spire-cacerts-webhook",
            "-n",
            "spire-cacerts",
            "--timeout=300s",
          ]).finally(() => (rolledOut = true));
          try {
            // Until the rollout is done and the last old pod has finished terminating, then ~3 s
            // more; 8 minutes at most.
            const deadline = Date.now() + 480_000;
            let drained = 0;
            while (drained < 15 && Date.now() < deadline) {
              await createOne(attempts % 10 === 0);
              await delay(200);
              if (rolledOut && (await webhookPods()).every((name) => !before.includes(name))) {
                drained++;
              }
            }
          } finally {
            const done = await status;
            assert.equal(done.code, 0, done.stderr);
          }
          const after = await webhookPods();
          assert.ok(after.every((name) => !before.includes(name)), `${before} -> ${after}`);
          log(
            `rollout restart: ${attempts} labelled creates (${created.length} real), ` +
              `${failures.length} failed; webhook pods ${before.join(",")} -> ${after.join(",")}`,
          );
          if (created.length) {
            // Bound to a missing node, the pod GC may have removed some already.
            await e.k(["delete", "pod", "-n", "spiffe-demo", "--ignore-not-found", ...created]);
          }
          assert.deepEqual(failures, []);
          assert.ok(attempts >= 20, `only ${attempts} creates during the rollout`);
        },
      );

      await t.step(
        "9. a Go client that loads its roots once survives a SPIRE CA rotation only when its " +
          "Deployment asks for restart-on-trust-change; a removal restarts nothing",
        async () => {
          const dir = await Deno.makeTempDir({ prefix: "cacerts-e2e-extra-" });
          const [x, y] = await Promise.all([
            createCa(dir, "extra-x", "Extra CA X"),
            createCa(dir, "extra-y", "Extra CA Y"),
          ]);
          const extraBundle = (pems: string[]) =>
            JSON.stringify({
              apiVersion: "certificates.k8s.io/v1",
              kind: "ClusterTrustBundle",
              metadata: { name: EXTRA_BUNDLE },
              spec: { trustBundle: pems.join("") },
            });
          await e.k(["apply", "-f", "-"], extraBundle([x.certPem]));
          await e.k(
            ["apply", "-f", "-"],
            JSON.stringify({
              apiVersion: "cacerts.csi.cert-manager.io/v1alpha1",
              kind: "CAProviderClass",
              metadata: { namespace: "spiffe-demo", name: "extra" },
              spec: {
                refs: [{
                  apiGroup: "certificates.k8s.io",
                  kind: "ClusterTrustBundle",
                  name: EXTRA_BUNDLE,
                }],
              },
            }),
          );
          await e.k(["apply", "-f", ROOTS_ONCE_FIXTURE]);
          const logsOf = (target: string) => e.k(["logs", "-n", "spiffe-demo", target, "--tail=5"]);
          const lastLine = async (target: string) =>
            (await logsOf(target)).trim().split("\n").at(-1) ?? "";
          const replicaSets = async (app: string) =>
            (await e.jsonpath(
              ["replicasets", "-n", "spiffe-demo", "-l", `app=${app}`],
              "{.items[*].metadata.name}",
            )).split(/\s+/).filter(Boolean);
          const deployment = (name: string, path: string) =>
            e.jsonpath(["deployment", name, "-n", "spiffe-demo"], path);
          await e.waitReady("spiffe-demo", "app=roots-restart", 180_000);
          const staticPod = await e.waitReady("spiffe-demo", "app=roots-static", 180_000);
          for (const target of ["deployment/roots-restart", `pod/${staticPod}`]) {
            await waitFor(
              `${target} calls the webhook`,
              async () => /^\S+ \S+ ok status=\d+ root=[0-9a-f]{64}/.test(await lastLine(target)),
              {
                timeoutMs: 60_000,
                intervalMs: 2_000,
              },
            );
          }
          const baseline = await waitFor(
            "roots-restart's CA set recorded",
            async () =>
              (await deployment("roots-restart", `{.metadata.annotations.${TRUSTED}}`)) ||
              undefined,
            { timeoutMs: 60_000, intervalMs: 2_000 },
          );
          assert.equal(await deployment("roots-static", `{.metadata.annotations.${TRUSTED}}`), "");
          assert.equal((await replicaSets("roots-restart")).length, 1);

          // Two gains inside the settle delay: SPIRE prepares a CA, the extra class gains Y.
          const before = new Set(await e.spireRoots());
          const activeBefore = authorityIds(
            await e.spireServer(["localauthority", "x509", "show"]),
          ).active;
          assert.ok(activeBefore, "an active X.509 authority");
          await e.spireServer(["localauthority", "x509", "prepare"]);
          const added = (await e.spireRoots()).filter((r) => !before.has(r));
          assert.equal(added.length, 1, "prepare adds one root to the bundle");
          await e.k(["apply", "-f", "-"], extraBundle([x.certPem, y.certPem]));
          const gained = [fingerprint(added[0]), fingerprint(y.certPem)];
          const t0 = Date.now();
          await waitFor(
            "roots-restart rolled out",
            async () => (await replicaSets("roots-restart")).length === 2,
            {
              timeoutMs: SETTLE_MS + 90_000,
              intervalMs: 2_000,
            },
          );
          log(`roots-restart rolled out ${Date.now() - t0} ms after the gains`);
          await e.k([
            "rollout",
            "status",
            "deployment/roots-restart",
            "-n",
            "spiffe-demo",
            "--timeout=180s",
          ]);
          // One rollout for both: the new baseline holds both CAs, one Event names both.
          const trusted = (await deployment("roots-restart", `{.metadata.annotations.${TRUSTED}}`))
            .split(",");
          for (const fp of gained) assert.ok(trusted.includes(fp), `${fp} not in ${trusted}`);
          assert.notEqual(trusted.join(), baseline);
          const events = JSON.parse(
            await e.k([
              "get",
              "events",
              "-n",
              "spiffe-demo",
              "--field-selector",
              "involvedObject.kind=Deployment,involvedObject.name=roots-restart,reason=TrustRestart",
              "-o",
              "json",
            ]),
          ) as { items: { message: string }[] };
          assert.equal(events.items.length, 1, JSON.stringify(events.items));
          for (const fp of gained) assert.ok(events.items[0].message.includes(`sha256:${fp}`));
          log(`Event: ${events.items[0].message}`);
          assert.equal((await replicaSets("roots-static")).length, 1);
          assert.equal(
            await deployment("roots-static", `{.spec.template.metadata.annotations}`),
            "",
          );
          const restartedAt = await deployment(
            "roots-restart",
            `{.spec.template.metadata.annotations.${RESTARTED_AT}}`,
          );

          // SPIRE switches to the new CA and forces every SVID off the old one.
          const prepared = authorityIds(await e.spireServer(["localauthority", "x509", "show"]))
            .prepared;
          assert.ok(prepared, "a prepared X.509 authority");
          await e.spireServer(["localauthority", "x509", "activate", "-authorityID", prepared]);
          await e.spireServer(["localauthority", "x509", "taint", "-authorityID", activeBefore]);
          const ip = await e.jsonpath(
            ["service", "spire-cacerts-webhook", "-n", "spire-cacerts"],
            "{.spec.clusterIP}",
          );
          const t1 = Date.now();
          await waitFor("the webhook serves an SVID of the new CA", async () => {
            try {
              await webhookCertificate(ip, toPem(added));
              return true;
            } catch {
              return false;
            }
          }, { timeoutMs: 180_000, intervalMs: 2_000 });
          log(`webhook SVID from the new CA ${Date.now() - t1} ms after activate + taint`);
          const newRoot = new RegExp(`ok status=\\d+ root=${gained[0]} `);
          await waitFor(
            "the restarted client trusts the new CA",
            async () => newRoot.test(await lastLine("deployment/roots-restart")),
            {
              timeoutMs: 60_000,
              intervalMs: 2_000,
            },
          );
          await waitFor(
            "the client that was not restarted fails",
            async () =>
              /FAIL .*certificate signed by unknown authority/.test(
                await lastLine(`pod/${staticPod}`),
              ),
            { timeoutMs: 60_000, intervalMs: 2_000 },
          );
          log(`roots-static: ${await lastLine(`pod/${staticPod}`)}`);
          assert.equal((await replicaSets("roots-restart")).length, 2, "one rollout only");

          // A removal alone: the extra class loses Y again; nothing is rolled out.
          await e.k(["apply", "-f", "-"], extraBundle([x.certPem]));
          await waitFor("spiffe-demo/extra back to one CA", async () =>
            (await e.jsonpath(
              ["caproviderclass", "extra", "-n", "spiffe-demo"],
              "{.status.certificates}",
            )) === "1", { timeoutMs: 60_000, intervalMs: 2_000 });
          await delay(SETTLE_MS + 10_000);
          assert.equal((await replicaSets("roots-restart")).length, 2, "a removal rolled out");
          assert.equal(
            await deployment(
              "roots-restart",
              `{.spec.template.metadata.annotations.${RESTARTED_AT}}`,
            ),
            restartedAt,
          );
          assert.ok(newRoot.test(await lastLine("deployment/roots-restart")));
          await e.k(["delete", "-f", ROOTS_ONCE_FIXTURE, "--wait=false"]);
          await e.k(["delete", "caproviderclass", "extra", "-n", "spiffe-demo"]);
          await e.k(["delete", "clustertrustbundle", EXTRA_BUNDLE]);
          await Deno.remove(dir, { recursive: true });
        },
      );
    } finally {
      log("stopping the cluster");
      await cluster.stop();
      log("stopped");
    }
    // The node's host paths (kubelet's, the driver's state, SPIRE's sockets, the volume) are gone.
    for (const path of [KUBELET_DIR, DRIVER_STATE_DIR, "/run/spire", PV_DIR]) {
      assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound, `${path} left behind`);
    }
  },
});
