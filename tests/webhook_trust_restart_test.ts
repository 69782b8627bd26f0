/**
 * The trust-restart controller of the shipped webhook program, two replicas, run as the webhook's
 * ServiceAccount under exactly `manifests/webhook/rbac.yaml` against a real kube-apiserver:
 * workloads annotated `cacerts.spiffe.io/restart-on-trust-change` (or in an annotated namespace)
 * are rolled out — one pod-template change, seen as one new `metadata.generation` — when the CA
 * set of their classes gains a certificate, after the settle delay; two gains inside the delay
 * make one rollout; a removal alone rolls nothing out; a second gain inside the interval waits
 * for it; unannotated workloads are never touched. Each rollout leaves an Event on the workload
 * naming the class and the CA, and the metric counts it.
 *
 * The classes' CA sets come from their status (written by the same program's status controller),
 * their sources are ClusterTrustBundles without a signer, as any user may create them.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLASS_API_VERSION, CLASS_KIND, CLASSES_ATTRIBUTE, DRIVER_NAME } from "../api/mod.ts";
import {
  createCa,
  installCrds,
  type KubeApiServer,
  needsTools,
  startKubeApiServer,
  waitFor,
  writeServiceAccountKubeconfig,
} from "./harness/mod.ts";
import { applyObject, certSha256 } from "./harness/kube_objects.ts";
import { startWebhookProcess, type WebhookProcess } from "./harness/webhook_process.ts";
import { Informer, type KubeClient, type KubeObject } from "../kube/mod.ts";
import { setTimeout as delay } from "node:timers/promises";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CRD = join(ROOT, "manifests/crds/caproviderclasses.yaml");
const RBAC = join(ROOT, "manifests/webhook/rbac.yaml");
const ON = "cacerts.spiffe.io/restart-on-trust-change";
const TRUSTED = "cacerts.spiffe.io/trusted-fingerprints";
const RESTARTED_AT = "cacerts.spiffe.io/trust-restarted-at";
const SETTLE_S = 3;
const INTERVAL_S = 25;

/** A kubeconfig file that authenticates with the webhook ServiceAccount's token. */
async function webhookKubeconfig(kube: KubeApiServer, dir: string): Promise<string> {
  const path = join(dir, "webhook.kubeconfig");
  await writeServiceAccountKubeconfig(
    kube,
    { namespace: "spire-cacerts", name: "spire-cacerts-webhook" },
    path,
  );
  return path;
}

function bundle(name: string, pems: string[]) {
  return {
    apiVersion: "certificates.k8s.io/v1",
    kind: "ClusterTrustBundle",
    metadata: { name },
    spec: { trustBundle: pems.join("") },
  };
}

function capClass(namespace: string, name: string, bundleName: string) {
  return {
    apiVersion: CLASS_API_VERSION,
    kind: CLASS_KIND,
    metadata: { namespace, name },
    spec: {
      refs: [{ apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle", name: bundleName }],
    },
  };
}

/** A workload whose pods mount the CSI volume of `classes` (the template never runs here). */
function workload(
  kind: "Deployment" | "DaemonSet" | "StatefulSet",
  namespace: string,
  name: string,
  classes: string,
  annotations: Record<string, string> = {},
) {
  const labels = { app: name };
  return {
    apiVersion: "apps/v1",
    kind,
    metadata: { namespace, name, annotations },
    spec: {
      ...(kind === "StatefulSet" ? { serviceName: name } : {}),
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          containers: [{ name: "app", image: "registry.invalid/app:1" }],
          volumes: [{
            name: "ca",
            csi: {
              driver: DRIVER_NAME,
              readOnly: true,
              volumeAttributes: { [CLASSES_ATTRIBUTE]: classes },
            },
          }],
        },
      },
    },
  };
}

interface Seen {
  trusted: string[] | undefined;
  restartedAt: string | undefined;
}

async function read(kube: KubeApiServer, kind: string, ns: string, name: string): Promise<Seen> {
  const out = await kube.kubectl(["get", kind, name, "-n", ns, "-o", "json"], { check: true });
  const o = JSON.parse(out.stdout) as {
    metadata: { annotations?: Record<string, string> };
    spec: { template: { metadata?: { annotations?: Record<string, string> } } };
  };
  const trusted = o.metadata.annotations?.[TRUSTED];
  return {
    trusted: trusted === undefined ? undefined : trusted.split(",").filter(Boolean),
    restartedAt: o.spec.template.metadata?.annotations?.[RESTARTED_AT],
  };
}

/**
 * Every pod-template rollout annotation a collection's objects took, in order, from a watch (so
 * two patches in quick succession are two entries, which polling could miss).
 */
class RolloutLog {
  readonly #informer: Informer;
  readonly #seen = new Map<string, string[]>();

  constructor(client: KubeClient, path: string) {
    this.#informer = new Informer(client, path);
    const record = (o: KubeObject) => {
      const obj = o as {
        metadata: { name: string };
        spec: { template: { metadata?: { annotations?: Record<string, string> } } };
      };
      const value = obj.spec.template.metadata?.annotations?.[RESTARTED_AT];
      const list = this.#seen.get(obj.metadata.name) ?? [];
      if (value !== undefined && list.at(-1) !== value) list.push(value);
      this.#seen.set(obj.metadata.name, list);
    };
    this.#informer.on("add", record);
    this.#informer.on("update", record);
  }

  start(): Promise<void> {
    return this.#informer.start();
  }

  /** The rollout times `name` took so far. */
  of(name: string): string[] {
    return [...(this.#seen.get(name) ?? [])];
  }

  stop(): Promise<void> {
    return this.#informer.stop();
  }
}

async function classCount(kube: KubeApiServer, ns: string, name: string): Promise<number> {
  const out = await kube.kubectl(
    ["get", "caproviderclass", name, "-n", ns, "-o", "jsonpath={.status.certificates}"],
    { check: true },
  );
  return Number(out.stdout || "0");
}

async function metric(webhook: WebhookProcess, line: RegExp): Promise<number> {
  const text = await (await fetch(`${webhook.health}/metrics`)).text();
  return Number(line.exec(text)?.[1] ?? "0");
}

Deno.test({
  name: "trust restart: annotated workloads roll out once per gained CA, settle delay and " +
    "interval honoured, removals and unannotated workloads left alone, two replicas",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-trust-restart-" });
    const kube = await startKubeApiServer();
    const webhooks: WebhookProcess[] = [];
    const rollouts: RolloutLog[] = [];
    try {
      const [a, b, c, d] = await Promise.all(
        ["a", "b", "c", "d"].map((n) => createCa(dir, `ca-${n}`, `Restart CA ${n}`)),
      );
      const [fa, fb, fc, fd] = [a, b, c, d].map((x) => certSha256(x.certPem));
      await installCrds(kube, CRD);
      for (const ns of ["spire", "spire-cacerts", "shop"]) {
        await kube.kubectl(["create", "namespace", ns], { check: true });
      }
      // A namespace whose workloads restart by default.
      await applyObject(kube, {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: "fleet", annotations: { [ON]: "true" } },
      });
      await kube.kubectl(["apply", "-f", RBAC], { check: true });
      await applyObject(kube, bundle("extra-bundle", [a.certPem]));
      await applyObject(kube, capClass("shop", "extra", "extra-bundle"));
      await applyObject(kube, capClass("fleet", "extra", "extra-bundle"));
      await applyObject(kube, workload("Deployment", "shop", "web", "extra", { [ON]: "true" }));
      await applyObject(kube, workload("Deployment", "shop", "plain", "extra"));
      await applyObject(kube, workload("DaemonSet", "fleet", "agent", "extra"));
      await applyObject(kube, workload("StatefulSet", "fleet", "db", "extra"));
      await applyObject(
        kube,
        workload("Deployment", "fleet", "pinned", "extra", { [ON]: "false" }),
      );

      const shop = new RolloutLog(kube.client, "/apis/apps/v1/namespaces/shop/deployments");
      const fleet = new RolloutLog(kube.client, "/apis/apps/v1/namespaces/fleet/daemonsets");
      const stateful = new RolloutLog(kube.client, "/apis/apps/v1/namespaces/fleet/statefulsets");
      rollouts.push(shop, fleet, stateful);
      await Promise.all(rollouts.map((r) => r.start()));
      const kubeconfig = await webhookKubeconfig(kube, dir);
      for (const i of [0, 1]) {
        webhooks.push(startWebhookProcess({
          logPath: join(dir, `webhook-${i}.log`),
          args: [
            `--cert-dir=${join(dir, "no-svid")}`,
            `--kubeconfig=${kubeconfig}`,
            `--trust-restart-settle=${SETTLE_S}s`,
            `--trust-restart-interval=${INTERVAL_S}s`,
          ],
        }));
      }
      const logs = () => webhooks.map((w) => w.process.logTail(15)).join("\n----\n");
      const web = () => read(kube, "deployment", "shop", "web");
      const agent = () => read(kube, "daemonset", "fleet", "agent");
      const setBundle = (pems: string[]) => applyObject(kube, bundle("extra-bundle", pems));
      const untouched = async () => {
        const quiet: [string, string, string][] = [
          ["deployment", "shop", "plain"],
          ["deployment", "fleet", "pinned"],
        ];
        for (const [kind, ns, name] of quiet) {
          const seen = await read(kube, kind, ns, name);
          assert.deepEqual(seen, { trusted: undefined, restartedAt: undefined }, name);
        }
      };

      await t.step("first sight: the CA set is recorded, nothing is rolled out", async () => {
        await waitFor("baselines recorded", async () => {
          const [w, g] = await Promise.all([web(), agent()]);
          return w.trusted?.join() === fa && g.trusted?.join() === fa;
        }, { timeoutMs: 60_000, intervalMs: 200, detail: logs });
        assert.deepEqual(await web(), { trusted: [fa], restartedAt: undefined });
        assert.deepEqual(await agent(), { trusted: [fa], restartedAt: undefined });
        await untouched();
      });

      let firstRollout = "";
      await t.step("two gains inside the settle delay make one rollout", async () => {
        const t0 = Date.now();
        await setBundle([a.certPem, b.certPem]);
        await delay(1_000);
        await setBundle([a.certPem, b.certPem, c.certPem]);
        await waitFor("web rolled out", async () => (await web()).restartedAt !== undefined, {
          timeoutMs: 30_000,
          intervalMs: 200,
          detail: logs,
        });
        const after = Date.now() - t0;
        assert.ok(after >= SETTLE_S * 1000 - 500, `rolled out after ${after} ms`);
        await waitFor("agent rolled out", async () => (await agent()).restartedAt !== undefined, {
          timeoutMs: 30_000,
          intervalMs: 200,
          detail: logs,
        });
        // Both replicas had the gain; only one rollout each landed, with both CAs in it.
        await delay(SETTLE_S * 1000 + 2_000);
        const w = await web();
        firstRollout = w.restartedAt!;
        assert.deepEqual(w, { trusted: [fa, fb, fc].sort(), restartedAt: firstRollout });
        assert.deepEqual(shop.of("web"), [firstRollout], "one rollout of web");
        assert.equal(fleet.of("agent").length, 1, "one rollout of agent");
        await waitFor("db rolled out", () => stateful.of("db").length === 1, {
          timeoutMs: 10_000,
          detail: logs,
        });
        await untouched();
        const events = JSON.parse(
          (await kube.kubectl([
            "get",
            "events",
            "-n",
            "shop",
            "--field-selector",
            "involvedObject.name=web,reason=TrustRestart",
            "-o",
            "json",
          ], { check: true })).stdout,
        ) as { items: { message: string; involvedObject: unknown }[] };
        assert.equal(events.items.length, 1, JSON.stringify(events.items));
        const message = events.items[0].message;
        assert.match(message, /CAProviderClass shop\/extra gained CA/);
        assert.ok(message.includes(`sha256:${fb}`) && message.includes(`sha256:${fc}`), message);
        const total = (webhooks: WebhookProcess[], kind: string) =>
          Promise.all(webhooks.map((w) =>
            metric(
              w,
              new RegExp(
                `^spire_cacerts_webhook_trust_restarts_total\\{kind="${kind}"\\} (\\d+)`,
                "m",
              ),
            )
          )).then((n) => n.reduce((x, y) => x + y, 0));
        assert.equal(await total(webhooks, "Deployment"), 1);
        assert.equal(await total(webhooks, "DaemonSet"), 1);
        assert.equal(await total(webhooks, "StatefulSet"), 1);
      });

      await t.step("a removal alone rolls nothing out", async () => {
        await setBundle([a.certPem]);
        await waitFor(
          "class status shows 1 certificate",
          async () => (await classCount(kube, "shop", "extra")) === 1,
          { timeoutMs: 10_000, detail: logs },
        );
        await delay(SETTLE_S * 1000 + 2_000);
        const w = await web();
        assert.deepEqual(shop.of("web"), [firstRollout]);
        assert.equal(w.restartedAt, firstRollout);
        // The running pods still trust B and C: the baseline keeps them.
        assert.deepEqual(w.trusted, [fa, fb, fc].sort());
      });

      await t.step("a gain inside the interval waits for it", async () => {
        const last = new Date(firstRollout).getTime();
        await setBundle([a.certPem, d.certPem]);
        await delay(SETTLE_S * 1000 + 2_000);
        if (Date.now() < last + INTERVAL_S * 1000 - 1_000) {
          assert.deepEqual(shop.of("web"), [firstRollout], "rolled out again inside the interval");
        }
        await waitFor("web rolled out again", () => shop.of("web").length === 2, {
          timeoutMs: INTERVAL_S * 1000 + 20_000,
          intervalMs: 250,
          detail: logs,
        });
        const w = await web();
        assert.ok(
          new Date(w.restartedAt!).getTime() >= last + INTERVAL_S * 1000,
          `${w.restartedAt} is less than ${INTERVAL_S}s after ${firstRollout}`,
        );
        assert.deepEqual(w.trusted, [fa, fd].sort());
        assert.deepEqual(shop.of("web"), [firstRollout, w.restartedAt]);
        await waitFor("agent rolled out again", () => fleet.of("agent").length === 2, {
          timeoutMs: 10_000,
          detail: logs,
        });
        assert.deepEqual(shop.of("plain"), []);
        await untouched();
      });
      for (const w of webhooks) w.process.assertRunning();
    } finally {
      for (const w of webhooks) await w.process.stop();
      for (const r of rollouts) await r.stop();
      await kube.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
