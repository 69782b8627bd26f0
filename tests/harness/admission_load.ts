/**
 * Production-shaped admission load without a cluster: a real kube-apiserver + etcd, the shipped
 * `webhook/main.ts` as a child process inside a cgroup v1 memory cgroup capped at the
 * Deployment's `limits.memory`, run with the Deployment's args and env, registered with the
 * shipped MutatingWebhookConfiguration (Service swapped for a URL), serving a `localhost` SVID
 * that a new leaf replaces every few seconds the way spiffe-helper writes it. Pods are created
 * through the API server over HTTP/2 (as client-go does), open-loop at fixed rates or in bursts,
 * and each answer is checked for the mutation.
 *
 * Differences from a cluster, by necessity: the API server dials a URL, not the Service; the
 * webhook runs as `deno run` of the sources rather than the image's binary; the controller
 * talks to the harness API server with the admin kubeconfig instead of its ServiceAccount.
 *
 * Used by tests/webhook_load_test.ts and bench/admission_load_bench.ts.
 *
 * @module
 */

import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { AdmissionregistrationV1Api, type V1Pod } from "@kubernetes/client-node";
import { CLASS_GROUP, CLASS_PLURAL, CLASS_VERSION, INJECT_LABEL } from "../../api/mod.ts";
import { installCrds, type KubeApiServer, startKubeApiServer } from "./kube_apiserver.ts";
import { MemoryCgroup } from "./cgroup.ts";
import { type CertificateFiles, createCa, writeLocalhostSvid } from "./pki.ts";
import { freePorts, type ManagedProcess, startProcess, waitFor } from "./process.ts";
import {
  overrideFlags,
  readWebhookContainer,
  webhookConfigurationForUrl,
  type WebhookContainerSpec,
} from "./webhook_manifest.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
/** Name of the volume the webhook adds. */
export const TRUST_STORE_VOLUME = "spire-cacerts";
/** Where the webhook mounts it by default. */
export const TRUST_STORE_MOUNT_PATH = "/etc/ssl/certs";
const SVID_UPDATES_METRIC = "spire_cacerts_webhook_svid_updates_total";

/** The load setup failed to start, or to clean up. */
export class AdmissionLoadError extends Error {
  /**
   * Creates the error.
   *
   * @param message what failed
   * @param options the underlying error, if any
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AdmissionLoadError";
  }
}

/** Options of {@link startAdmissionLoad}. */
export interface AdmissionLoadOptions {
  /** A new SVID leaf this often (default 2000 ms; 0 = never). */
  rotateEveryMs?: number;
  /** Progress messages. */
  log?: (message: string) => void;
}

/** The outcome of one pod create. */
export interface PodCreateResult {
  /** Pod name. */
  name: string;
  /** Whether it carried the inject label. */
  labelled: boolean;
  /** From sending the request to the end of the answer, in ms. */
  latencyMs: number;
  /** HTTP status (0 when the request itself failed). */
  status: number;
  /** Why the create failed, or why the stored pod is wrong; undefined when all is well. */
  problem?: string;
}

/** A running load setup. */
export interface AdmissionLoad {
  /** The API server. */
  kube: KubeApiServer;
  /** The webhook process (pid = the program's, inside {@link cgroup}). */
  webhook: ManagedProcess;
  /** The webhook's memory cgroup, limited to {@link container}'s memory limit. */
  cgroup: MemoryCgroup;
  /** What the Deployment manifest says about the webhook container. */
  container: WebhookContainerSpec;
  /** The args the webhook was started with. */
  args: string[];
  /** The namespace the pods are created in. */
  namespace: string;
  /** The CSI driver the webhook puts in a labelled pod (its `--driver-name`). */
  driverName: string;
  /** The CAProviderClass the volume names (its `--class-name`). */
  className: string;
  /** How many new leaves were written so far. */
  readonly rotations: number;
  /** The webhook's `spire_cacerts_webhook_svid_updates_total`. */
  svidUpdates(): Promise<number>;
  /** Creates one pod, labelled or not, and checks the answer. */
  createPod(labelled: boolean): Promise<PodCreateResult>;
  /** Every pod stored in {@link namespace}. */
  listPods(): Promise<V1Pod[]>;
  /**
   * Deletes the namespace and its pods and waits until it is gone. With no kube-controller-manager
   * here, this does the namespace controller's part: deletes the pods and the CAProviderClass,
   * then empties `spec.finalizers` through the finalize subresource.
   */
  deleteNamespace(): Promise<void>;
  /** Stops the rotation and the webhook, removes the cgroup, stops the API server. */
  stop(): Promise<void>;
}

/**
 * What is wrong with a stored pod, or undefined: a labelled pod needs the CSI volume of
 * `driverName` for class `className` and a read-only mount of it in every container; an
 * unlabelled one no volume and no mount at all.
 *
 * @param pod the stored pod
 * @param labelled whether it carried the inject label
 * @param driverName the CSI driver the webhook was started with
 * @param className the CAProviderClass it was started with
 */
export function mutationProblem(
  pod: V1Pod,
  labelled: boolean,
  driverName: string,
  className: string,
): string | undefined {
  const name = pod.metadata?.name;
  const volumes = pod.spec?.volumes ?? [];
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  if (!labelled) {
    const mounts = containers.flatMap((c) => c.volumeMounts ?? []);
    return volumes.length || mounts.length
      ? `unlabelled ${name} was changed: ${JSON.stringify({ volumes, mounts })}`
      : undefined;
  }
  const volume = volumes.find((v) => v.name === TRUST_STORE_VOLUME);
  if (
    volume?.csi?.driver !== driverName || volume.csi.readOnly !== true ||
    volume.csi.volumeAttributes?.caProviderClasses !== className
  ) {
    return `labelled ${name} has no ${driverName} volume of class ${className}: ${
      JSON.stringify(volumes)
    }`;
  }
  for (const c of containers) {
    const mount = (c.volumeMounts ?? []).find((m) => m.name === TRUST_STORE_VOLUME);
    if (mount?.mountPath !== TRUST_STORE_MOUNT_PATH || mount.readOnly !== true) {
      return `labelled ${name}: container ${c.name} mounts ${JSON.stringify(mount)}`;
    }
  }
  return undefined;
}

function flagValue(args: readonly string[], name: string): string | undefined {
  const prefix = `--${name}=`;
  return args.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

/**
 * Starts the API server, the webhook in its memory cgroup and the SVID rotation, registers the
 * webhook and waits until a labelled pod comes back mutated.
 *
 * @param options rotation period and progress log
 * @throws {AdmissionLoadError} when a part does not come up (everything started is stopped)
 */
export async function startAdmissionLoad(
  options: AdmissionLoadOptions = {},
): Promise<AdmissionLoad> {
  const log = options.log ?? (() => {});
  const rotateEveryMs = options.rotateEveryMs ?? 2_000;
  const container = readWebhookContainer();
  const work = await Deno.makeTempDir({ prefix: "admission-load-" });
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    const errors: unknown[] = [];
    for (const fn of cleanups.reverse()) await fn().catch((error) => errors.push(error));
    cleanups.length = 0;
    await Deno.remove(work, { recursive: true }).catch(() => {});
    if (errors.length) {
      throw new AdmissionLoadError(`cleanup failed: ${errors.join("; ")}`, { cause: errors[0] });
    }
  };
  try {
    const kube = await startKubeApiServer();
    cleanups.push(() => kube.stop());
    log(`kube-apiserver at ${kube.url}`);
    // The webhook's controller keeps a CAProviderClass per namespace and applies the
    // ClusterSPIFFEIDs of its registrations dir: both CRDs, as the manifests ship them.
    await installCrds(kube, join(ROOT, "manifests/crds/caproviderclasses.yaml"));
    await installCrds(kube, join(ROOT, "manifests/crds/clusterspiffeids.yaml"));

    const pki = join(work, "pki");
    const certDir = join(work, "certs");
    const registrations = join(work, "registrations");
    await Promise.all([pki, certDir, registrations].map((d) => Deno.mkdir(d)));
    // The registrations ConfigMap's one file, as the Deployment mounts it.
    await Deno.copyFile(
      join(ROOT, "manifests/spire/clusterspiffeids.yaml"),
      join(registrations, "clusterspiffeids.yaml"),
    );
    const ca: CertificateFiles = await createCa(pki, "ca", "admission-load-ca");
    await writeLocalhostSvid(ca, pki, certDir, "leaf-0");

    const cgroup = MemoryCgroup.create("spire-cacerts-webhook");
    cleanups.push(() => cgroup.remove());
    cgroup.setLimit(container.memoryLimitBytes);

    const [port, healthPort] = freePorts(2);
    // The Deployment's args, with what differs outside the pod: ports, the SVID and
    // registrations directories, loopback only, and the kubeconfig instead of the in-cluster
    // ServiceAccount. The controller runs, as in production: its watches and caches share the
    // webhook's memory limit.
    const args = overrideFlags(container.args, {
      port: String(port),
      "health-port": String(healthPort),
      "cert-dir": certDir,
      "registrations-dir": registrations,
      "bind-address": "127.0.0.1",
      kubeconfig: kube.kubeconfigPath,
    });
    const argv = cgroup.wrap([
      Deno.execPath(),
      "run",
      "-A",
      join(ROOT, "webhook/main.ts"),
      ...args,
    ]);
    const webhook = startProcess({
      name: "webhook",
      program: argv[0],
      args: argv.slice(1),
      env: container.env,
      logPath: join(work, "webhook.log"),
    });
    cleanups.push(() => webhook.stop());
    const health = `http://127.0.0.1:${healthPort}`;
    await waitFor("webhook /readyz", async () => {
      const response = await fetch(`${health}/readyz`).catch(() => undefined);
      await response?.body?.cancel();
      return response?.status === 200;
    }, {
      timeoutMs: 60_000,
      abort: () => webhook.assertRunning(),
      detail: () => webhook.logTail(),
    });
    log(
      `webhook ready (pid ${webhook.pid}, limit ${container.memoryLimit}, args ${args.join(" ")})`,
    );

    const configuration = webhookConfigurationForUrl(
      `https://localhost:${port}/mutate`,
      btoa(ca.certPem),
    );
    await kube.kubeConfig.makeApiClient(AdmissionregistrationV1Api)
      .createMutatingWebhookConfiguration({ body: configuration });

    let rotations = 0;
    let rotating = rotateEveryMs > 0;
    const rotation = (async () => {
      while (rotating) {
        await delay(rotateEveryMs);
        if (!rotating) break;
        await writeLocalhostSvid(ca, pki, certDir, `leaf-${++rotations}`);
      }
    })();
    cleanups.push(async () => {
      rotating = false;
      await rotation;
    });

    const namespace = `load-${crypto.randomUUID().slice(0, 8)}`;
    const client = Deno.createHttpClient({ caCerts: [kube.caPem], http2: true });
    cleanups.push(() => Promise.resolve(client.close()));
    // The API server's own request timeout is 60 s; a deletecollection of thousands of pods
    // may take longer.
    const api = (path: string, init: RequestInit = {}, timeoutMs = 60_000) =>
      fetch(`${kube.url}${path}`, {
        ...init,
        client,
        signal: AbortSignal.timeout(timeoutMs),
        headers: {
          authorization: `Bearer ${kube.token}`,
          "content-type": "application/json",
          ...init.headers,
        },
      });
    const created = await api("/api/v1/namespaces", {
      method: "POST",
      body: JSON.stringify({ metadata: { name: namespace } }),
    });
    if (created.status !== 201) {
      throw new AdmissionLoadError(
        `namespace ${namespace}: HTTP ${created.status} ${await created.text()}`,
      );
    }
    await created.body?.cancel();

    const driverName = flagValue(args, "driver-name") ?? "";
    const className = flagValue(args, "class-name") ?? "";
    let serial = 0;
    const createPod = async (labelled: boolean): Promise<PodCreateResult> => {
      const name = `${labelled ? "l" : "u"}-${++serial}`;
      const body = JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, labels: labelled ? { [INJECT_LABEL]: "true" } : { app: "plain" } },
        spec: {
          containers: [
            { name: "app", image: "example.invalid/app:1" },
            { name: "sidecar", image: "example.invalid/sidecar:1" },
          ],
        },
      });
      const started = performance.now();
      try {
        const response = await api(`/api/v1/namespaces/${namespace}/pods`, {
          method: "POST",
          body,
        });
        const text = await response.text();
        const latencyMs = performance.now() - started;
        if (response.status !== 201) {
          return {
            name,
            labelled,
            latencyMs,
            status: response.status,
            problem: text.slice(0, 300),
          };
        }
        const problem = mutationProblem(JSON.parse(text), labelled, driverName, className);
        return { name, labelled, latencyMs, status: response.status, problem };
      } catch (error) {
        return {
          name,
          labelled,
          latencyMs: performance.now() - started,
          status: 0,
          problem: String(error),
        };
      }
    };

    // The configuration is in effect once a labelled pod comes back mutated.
    await waitFor("webhook configuration in effect", async () => {
      const result = await createPod(true);
      return result.status === 201 && result.problem === undefined;
    }, { timeoutMs: 30_000, abort: () => webhook.assertRunning() });

    return {
      kube,
      webhook,
      cgroup,
      container,
      args,
      namespace,
      driverName,
      className,
      get rotations() {
        return rotations;
      },
      async svidUpdates() {
        const text = await (await fetch(`${health}/metrics`)).text();
        const line = text.split("\n").find((l) => l.startsWith(`${SVID_UPDATES_METRIC} `));
        return line === undefined ? 0 : Number(line.split(" ")[1]);
      },
      createPod,
      async listPods() {
        const pods: V1Pod[] = [];
        let token = "";
        do {
          const response = await api(
            `/api/v1/namespaces/${namespace}/pods?limit=500${
              token ? `&continue=${encodeURIComponent(token)}` : ""
            }`,
          );
          if (response.status !== 200) {
            throw new AdmissionLoadError(
              `list pods: HTTP ${response.status} ${await response.text()}`,
            );
          }
          const list = await response.json() as { items: V1Pod[]; metadata: { continue?: string } };
          pods.push(...list.items);
          token = list.metadata.continue ?? "";
        } while (token);
        return pods;
      },
      async deleteNamespace() {
        // A failed request is retried (after an overload the API server may have closed the
        // HTTP/2 connection); a wrong status is not.
        const call = async (path: string, init: RequestInit, ok: number[]) => {
          for (let attempt = 1;; attempt++) {
            let response: Response;
            try {
              response = await api(path, init, 300_000);
            } catch (error) {
              if (attempt >= 5) {
                throw new AdmissionLoadError(`${init.method ?? "GET"} ${path} failed`, {
                  cause: error,
                });
              }
              await delay(1_000);
              continue;
            }
            const text = await response.text();
            if (!ok.includes(response.status)) {
              throw new AdmissionLoadError(
                `${init.method ?? "GET"} ${path}: HTTP ${response.status} ${text}`,
              );
            }
            return text;
          }
        };
        await call(`/api/v1/namespaces/${namespace}`, { method: "DELETE" }, [200, 202, 409]);
        // Unscheduled pods go at once (no kubelet to wait for).
        await call(`/api/v1/namespaces/${namespace}/pods`, { method: "DELETE" }, [200]);
        await call(
          `/apis/${CLASS_GROUP}/${CLASS_VERSION}/namespaces/${namespace}/${CLASS_PLURAL}`,
          { method: "DELETE" },
          [200, 404],
        );
        const ns = JSON.parse(await call(`/api/v1/namespaces/${namespace}`, {}, [200]));
        ns.spec = { finalizers: [] };
        await call(`/api/v1/namespaces/${namespace}/finalize`, {
          method: "PUT",
          body: JSON.stringify(ns),
        }, [200, 404]);
        await waitFor(`namespace ${namespace} gone`, async () => {
          const response = await api(`/api/v1/namespaces/${namespace}`);
          await response.body?.cancel();
          return response.status === 404;
        }, { timeoutMs: 30_000 });
      },
      stop: cleanup,
    };
  } catch (error) {
    await cleanup().catch(() => {});
    throw error instanceof AdmissionLoadError
      ? error
      : new AdmissionLoadError("admission load setup failed", { cause: error });
  }
}

/** Options of {@link createPodsAtRates}. */
export interface RatesOptions {
  /** Labelled pods per second. */
  labelledPerSecond: number;
  /** Unlabelled pods per second, interleaved in the same window. */
  unlabelledPerSecond: number;
  /** How long, in ms. */
  durationMs: number;
}

async function openLoop(
  create: () => Promise<PodCreateResult>,
  perSecond: number,
  durationMs: number,
): Promise<PodCreateResult[]> {
  if (perSecond <= 0) return [];
  const pending: Promise<PodCreateResult>[] = [];
  const start = performance.now();
  const total = Math.round((perSecond * durationMs) / 1000);
  for (let i = 0; i < total; i++) {
    const wait = start + (i * 1000) / perSecond - performance.now();
    if (wait > 1) await delay(wait);
    pending.push(create());
  }
  return await Promise.all(pending);
}

/**
 * Creates pods open-loop at fixed rates: each is sent at its scheduled time whether or not the
 * earlier ones were answered, so a slow webhook shows as latency and failures, not as a lower
 * rate.
 *
 * @param load the setup
 * @param options the two rates and the duration
 * @returns every create's outcome, labelled ones first
 */
export async function createPodsAtRates(
  load: Pick<AdmissionLoad, "createPod">,
  options: RatesOptions,
): Promise<PodCreateResult[]> {
  const [labelled, unlabelled] = await Promise.all([
    openLoop(() => load.createPod(true), options.labelledPerSecond, options.durationMs),
    openLoop(() => load.createPod(false), options.unlabelledPerSecond, options.durationMs),
  ]);
  return [...labelled, ...unlabelled];
}

/**
 * Sends `count` creates at once, alternating labelled and unlabelled.
 *
 * @param load the setup
 * @param count how many pods
 * @returns every create's outcome
 */
export function createPodsBurst(
  load: Pick<AdmissionLoad, "createPod">,
  count: number,
): Promise<PodCreateResult[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => load.createPod(i % 2 === 0)));
}
