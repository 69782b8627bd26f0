/**
 * The trust-restart controller: rolls out Deployments, StatefulSets and DaemonSets that asked for
 * it (`cacerts.spiffe.io/restart-on-trust-change: "true"` on the workload or its namespace) when
 * the CA set of their pods' CAProviderClasses gains a certificate, the way `kubectl rollout
 * restart` does: by writing a time into a pod-template annotation
 * ({@link ANNOTATIONS.trustRestartedAt}). The rules are `trust_restart_plan.ts`'s.
 *
 * - The CA set of a class is the one the status controller publishes (`status.fingerprints`,
 *   computed with the driver's own admission rules), read only when `Ready=True` for the current
 *   generation: this controller resolves nothing itself and needs no Secret read.
 * - Workloads, namespaces and classes are watched cluster-wide through informers that keep only
 *   the fields read ({@link workloadView}: name, our annotations, the template's injection label
 *   and CSI volumes), so the caches stay small in a large cluster.
 * - Every write is a merge patch carrying the `resourceVersion` it was planned on: the webhook's
 *   replicas all run this controller, and the one whose patch lands rolls the workload out; the
 *   others get 409 Conflict, see the new baseline on their next watch event and do nothing.
 * - A rollout records an Event on the workload naming the class and the fingerprint of every CA
 *   gained, and counts `spire_cacerts_webhook_trust_restarts_total{kind}`.
 *
 * @module
 */

import {
  ANNOTATION_PREFIX,
  ANNOTATIONS,
  CLASS_GROUP,
  CLASS_PLURAL,
  CLASS_VERSION,
  type ObjectName,
  WORKLOAD_ANNOTATIONS,
} from "../api/mod.ts";
import { type Logger, Semaphore, SILENT_LOGGER } from "../cli/mod.ts";
import {
  describeApiError,
  isApiStatus,
  type KubeClient,
  type KubeObject,
  resourcePath,
} from "../kube/mod.ts";
import { type Feed, informerFeed } from "./informer_feed.ts";
import type { Registry } from "../prometheus/mod.ts";
import {
  DEFAULT_INTERVAL_MS,
  DEFAULT_SETTLE_MS,
  formatFingerprints,
  type Gain,
  lastTrustRestart,
  parseFingerprints,
  planTrustRestart,
  prefixedAnnotations,
  restartSetting,
  templateClasses,
  type WorkloadKind,
  type WorkloadView,
  workloadView,
} from "./trust_restart_plan.ts";

/** Rollouts started, by workload kind. */
export const TRUST_RESTARTS = "spire_cacerts_webhook_trust_restarts_total";
/** Writes (baseline or rollout) that failed with something other than a conflict. */
export const TRUST_RESTART_ERRORS = "spire_cacerts_webhook_trust_restart_errors_total";
/** Field manager of the controller's patches. */
export const TRUST_RESTART_FIELD_MANAGER = "spire-cacerts-webhook-trust-restart";
/** Reason of the Event recorded on a workload rolled out. */
export const RESTART_EVENT_REASON = "TrustRestart";

/** The collection plural of each workload kind (`apps/v1`). */
export const WORKLOAD_PLURALS: Readonly<Record<WorkloadKind, string>> = {
  Deployment: "deployments",
  StatefulSet: "statefulsets",
  DaemonSet: "daemonsets",
};

/** A namespace as the controller keeps it. */
export interface NamespaceView {
  /** Name and the annotations under the prefix. */
  metadata: { name: string; resourceVersion: string; annotations: Record<string, string> };
}

/** A CAProviderClass as the controller keeps it. */
export interface ClassTrust {
  /** Name. */
  metadata: { namespace: string; name: string; resourceVersion: string };
  /** Its CA fingerprints when `Ready=True` for the current generation, else undefined. */
  fingerprints: string[] | undefined;
}

/** The writes the controller makes. */
export interface WorkloadWriter {
  /**
   * Merge-patches the workload; the body carries `metadata.resourceVersion`, so a concurrent
   * change fails with 409.
   */
  patch(view: WorkloadView, body: Record<string, unknown>): Promise<void>;
  /** Records a Normal Event on the workload. */
  event(view: WorkloadView, reason: string, message: string): Promise<void>;
}

/** Options of {@link TrustRestartController}. */
export interface TrustRestartOptions {
  /** Deployments, StatefulSets and DaemonSets. */
  workloads: Feed<WorkloadView>;
  /** Namespaces (for the default annotation). */
  namespaces: Feed<NamespaceView>;
  /** CAProviderClasses with their published CA sets. */
  classes: Feed<ClassTrust>;
  /** Where patches and Events go. */
  writer: WorkloadWriter;
  /** The class the webhook injects (`--class-name`). */
  className: string;
  /** Settle delay (ms, default {@link DEFAULT_SETTLE_MS}). */
  settleMs?: number;
  /** Least time between two rollouts of one workload (ms, default {@link DEFAULT_INTERVAL_MS}). */
  intervalMs?: number;
  /** Where events go. */
  log?: Logger;
  /** Where counts go. */
  metrics?: Registry;
  /** The clock. */
  now?: () => Date;
  /** Writes in flight at most (default {@link DEFAULT_WRITE_CONCURRENCY}). */
  writeConcurrency?: number;
}

/**
 * Default bound on the controller's writes in flight. A CA gained by a class that thousands of
 * workloads use would otherwise start thousands of patches (and parse as many responses) at
 * once: with 300 Deployments and no bound the webhook's VmRSS rose from 104 to 150 MB
 * (bench/trust_restart_bench.ts).
 */
export const DEFAULT_WRITE_CONCURRENCY = 4;

const RESTARTED_AT = ANNOTATION_PREFIX + ANNOTATIONS.trustRestartedAt;
const TRUSTED = ANNOTATION_PREFIX + WORKLOAD_ANNOTATIONS.trustedFingerprints;
const RETRY_MS = 10_000;

function workloadKey(view: WorkloadView): string {
  return `${view.kind}/${view.metadata.namespace}/${view.metadata.name}`;
}

function nameKey(name: ObjectName): string {
  return `${name.namespace}/${name.name}`;
}

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The controller; see the module documentation. */
export class TrustRestartController {
  readonly #o: TrustRestartOptions;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #settleMs: number;
  readonly #intervalMs: number;
  readonly #workloads = new Map<string, WorkloadView>();
  /** Workload key to the class keys its pods use. */
  readonly #uses = new Map<string, string[]>();
  readonly #namespaces = new Map<string, Record<string, string>>();
  readonly #classes = new Map<string, string[] | undefined>();
  readonly #pendingSince = new Map<string, Date>();
  readonly #timers = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #busy = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #warned = new Set<string>();
  readonly #writes: Semaphore;
  #synced = false;
  #stopped = false;

  /** Makes the controller; nothing runs until {@link start}. */
  constructor(options: TrustRestartOptions) {
    this.#o = options;
    this.#log = options.log ?? SILENT_LOGGER;
    this.#now = options.now ?? (() => new Date());
    this.#settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    this.#intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.#writes = new Semaphore(options.writeConcurrency ?? DEFAULT_WRITE_CONCURRENCY);
    const metrics = options.metrics;
    if (metrics) {
      metrics.define(TRUST_RESTARTS, "counter", "Workloads rolled out for a gained CA, by kind.");
      metrics.define(
        TRUST_RESTART_ERRORS,
        "counter",
        "Failed writes of the trust-restart controller (baseline or rollout).",
      );
      metrics.inc(TRUST_RESTART_ERRORS, {}, 0);
    }
  }

  /** Starts the feeds; resolves once all three delivered their objects and a pass has run. */
  async start(): Promise<void> {
    await Promise.all([
      this.#o.namespaces.start({
        upsert: (ns) => this.#namespaceChanged(ns.metadata.name, ns.metadata.annotations),
        remove: (ns) => this.#namespaceChanged(ns.metadata.name, undefined),
      }),
      this.#o.classes.start({
        upsert: (c) => this.#classChanged(c.metadata, c.fingerprints),
        remove: (c) => this.#classChanged(c.metadata, undefined),
      }),
      this.#o.workloads.start({
        upsert: (w) => this.#workloadChanged(w),
        remove: (w) => this.#workloadRemoved(w),
      }),
    ]);
    this.#synced = true;
    for (const key of this.#workloads.keys()) this.#evaluate(key);
  }

  /** Stops the feeds and the timers; an in-flight write finishes on its own. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    await Promise.all([
      this.#o.workloads.stop(),
      this.#o.namespaces.stop(),
      this.#o.classes.stop(),
    ]);
  }

  /** Whether a write is in flight or a gain is waiting (for tests that wait for quiet). */
  get pending(): number {
    return this.#busy.size + this.#timers.size;
  }

  #namespaceChanged(name: string, annotations: Record<string, string> | undefined): void {
    if (annotations === undefined) this.#namespaces.delete(name);
    else this.#namespaces.set(name, annotations);
    for (const [key, view] of this.#workloads) {
      if (view.metadata.namespace === name) this.#evaluate(key);
    }
  }

  #classChanged(name: ObjectName, fingerprints: string[] | undefined): void {
    const key = nameKey(name);
    const before = this.#classes.get(key);
    const known = this.#classes.has(key);
    this.#classes.set(key, fingerprints);
    if (known && sameList(before, fingerprints)) return;
    for (const [workload, uses] of this.#uses) {
      if (uses.includes(key)) this.#evaluate(workload);
    }
  }

  #workloadChanged(view: WorkloadView): void {
    const key = workloadKey(view);
    this.#workloads.set(key, view);
    this.#uses.set(key, templateClasses(view, this.#o.className).map(nameKey));
    this.#evaluate(key);
  }

  #workloadRemoved(view: WorkloadView): void {
    const key = workloadKey(view);
    this.#workloads.delete(key);
    this.#uses.delete(key);
    this.#clearPending(key);
  }

  #clearPending(key: string): void {
    this.#pendingSince.delete(key);
    const timer = this.#timers.get(key);
    if (timer !== undefined) clearTimeout(timer);
    this.#timers.delete(key);
  }

  #later(key: string, ms: number): void {
    const old = this.#timers.get(key);
    if (old !== undefined) clearTimeout(old);
    this.#timers.set(
      key,
      setTimeout(() => {
        this.#timers.delete(key);
        this.#evaluate(key);
      }, Math.max(0, ms)),
    );
  }

  #evaluate(key: string): void {
    if (!this.#synced || this.#stopped) return;
    if (this.#busy.has(key)) {
      this.#dirty.add(key);
      return;
    }
    const view = this.#workloads.get(key);
    if (view === undefined) return this.#clearPending(key);
    const setting = restartSetting(
      view.metadata.annotations,
      this.#namespaces.get(view.metadata.namespace),
    );
    if (setting.invalid !== undefined) {
      const warnKey = `${key} ${setting.invalid.on} ${setting.invalid.value}`;
      if (!this.#warned.has(warnKey)) {
        this.#warned.add(warnKey);
        this.#log.warn(
          `${ANNOTATION_PREFIX}${WORKLOAD_ANNOTATIONS.restartOnTrustChange} is neither "true" ` +
            `nor "false"; treated as unset`,
          { workload: key, on: setting.invalid.on, value: setting.invalid.value },
        );
      }
    }
    const now = this.#now();
    const plan = planTrustRestart({
      enabled: setting.enabled,
      classes: (this.#uses.get(key) ?? []).map((k) => {
        const [namespace, name] = k.split("/");
        return { namespace, name };
      }),
      fingerprintsOf: (name) => this.#classes.get(nameKey(name)),
      recorded: parseFingerprints(view.metadata.annotations[TRUSTED]),
      lastRestart: lastTrustRestart(view),
      pendingSince: this.#pendingSince.get(key),
      now,
      settleMs: this.#settleMs,
      intervalMs: this.#intervalMs,
    });
    switch (plan.action) {
      case "none":
        // A gain that went away before it settled (or a workload that opted out) needs nothing.
        if (plan.why !== "unknown-class") this.#clearPending(key);
        return;
      case "record":
        this.#write(key, view, this.#recordBody(view, plan.fingerprints), undefined);
        return;
      case "wait":
        if (!this.#pendingSince.has(key)) {
          this.#pendingSince.set(key, now);
          this.#log.info("trust roots gained; rolling out after the settle delay", {
            workload: key,
            at: plan.until.toISOString(),
            gained: plan.gained.map((g) => g.fingerprint),
          });
        }
        this.#later(key, plan.until.getTime() - now.getTime());
        return;
      case "restart":
        this.#write(key, view, this.#restartBody(view, plan.fingerprints, now), plan.gained);
        return;
    }
  }

  #recordBody(view: WorkloadView, fingerprints: string[]): Record<string, unknown> {
    return {
      metadata: {
        resourceVersion: view.metadata.resourceVersion,
        annotations: { [TRUSTED]: formatFingerprints(fingerprints) },
      },
    };
  }

  #restartBody(view: WorkloadView, fingerprints: string[], now: Date): Record<string, unknown> {
    return {
      metadata: {
        resourceVersion: view.metadata.resourceVersion,
        annotations: { [TRUSTED]: formatFingerprints(fingerprints) },
      },
      spec: { template: { metadata: { annotations: { [RESTARTED_AT]: now.toISOString() } } } },
    };
  }

  #write(
    key: string,
    view: WorkloadView,
    body: Record<string, unknown>,
    gained: Gain[] | undefined,
  ): void {
    this.#busy.add(key);
    const done = () => {
      this.#busy.delete(key);
      if (this.#dirty.delete(key)) this.#evaluate(key);
    };
    this.#writes.run(() => this.#o.writer.patch(view, body)).then(
      async () => {
        if (gained === undefined) {
          this.#log.info("recorded the CA set of a workload's pods", { workload: key });
          return;
        }
        this.#clearPending(key);
        this.#o.metrics?.inc(TRUST_RESTARTS, { kind: view.kind });
        const message = restartMessage(view, gained);
        this.#log.info("rolled out for a gained CA", { workload: key, message });
        await this.#writes.run(() => this.#o.writer.event(view, RESTART_EVENT_REASON, message))
          .catch((error) =>
            this.#log.warn("cannot record the rollout Event", {
              workload: key,
              error: describeApiError(error),
            })
          );
      },
      (error) => {
        if (isApiStatus(error, 409)) {
          // Another replica (or a user) changed it first: the watch brings the newer object and
          // the plan is made again on it (planning on the stale copy would only conflict again).
          // A late look is kept in case that event never comes.
          this.#log.debug("workload changed meanwhile; planning again on its next version", {
            workload: key,
          });
          this.#later(key, RETRY_MS);
          return;
        }
        if (isApiStatus(error, 404)) return;
        this.#o.metrics?.inc(TRUST_RESTART_ERRORS);
        this.#log.warn("trust-restart write failed; retrying", {
          workload: key,
          error: describeApiError(error),
          retryInMs: RETRY_MS,
        });
        this.#later(key, RETRY_MS);
      },
    ).finally(done);
  }
}

/** The Event message of a rollout: which classes gained which CA fingerprints. */
export function restartMessage(view: WorkloadView, gained: readonly Gain[]): string {
  const byClass = new Map<string, string[]>();
  for (const gain of gained) {
    for (const name of gain.classes) {
      const key = nameKey(name);
      byClass.set(key, [...(byClass.get(key) ?? []), gain.fingerprint]);
    }
  }
  const parts = [...byClass].map(([cls, fps]) =>
    `CAProviderClass ${cls} gained CA ${fps.map((f) => `sha256:${f}`).join(", ")}`
  );
  const text = `rolled out ${view.kind} ${view.metadata.namespace}/${view.metadata.name}: ` +
    `${parts.join("; ")}; its pods read trust roots at start ` +
    `(${ANNOTATION_PREFIX}${WORKLOAD_ANNOTATIONS.restartOnTrustChange})`;
  return text.length > 1000 ? `${text.slice(0, 999)}…` : text;
}

/**
 * Reads a CAProviderClass's published CA set: `status.fingerprints` when its `Ready` condition is
 * `True` and its status describes the current generation, else undefined.
 */
export function classTrust(object: KubeObject): ClassTrust {
  const o = object as {
    metadata?: { namespace?: string; name?: string; resourceVersion?: string; generation?: number };
    status?: {
      observedGeneration?: number;
      fingerprints?: unknown;
      conditions?: { type?: string; status?: string }[];
    };
  };
  const status = o.status;
  const ready = status?.conditions?.find((c) => c?.type === "Ready")?.status === "True";
  const current = status?.observedGeneration === (o.metadata?.generation ?? 0);
  const list = status?.fingerprints;
  const fingerprints = ready && current && Array.isArray(list)
    ? [...new Set(list.filter((f): f is string => typeof f === "string"))].sort()
    : undefined;
  return {
    metadata: {
      namespace: o.metadata?.namespace ?? "",
      name: o.metadata?.name ?? "",
      resourceVersion: o.metadata?.resourceVersion ?? "",
    },
    fingerprints,
  };
}

function namespaceView(object: KubeObject): NamespaceView {
  const m = (object as {
    metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, unknown> };
  }).metadata;
  return {
    metadata: {
      name: m?.name ?? "",
      resourceVersion: m?.resourceVersion ?? "",
      annotations: prefixedAnnotations(m?.annotations),
    },
  };
}

/** Patches workloads and records Events through the API server. */
export function kubeWorkloadWriter(client: KubeClient, component: string): WorkloadWriter {
  const path = (view: WorkloadView) =>
    resourcePath({
      group: "apps",
      version: "v1",
      namespace: view.metadata.namespace,
      plural: WORKLOAD_PLURALS[view.kind],
      name: view.metadata.name,
    });
  return {
    async patch(view, body) {
      await client.patch(path(view), "merge", body, { fieldManager: TRUST_RESTART_FIELD_MANAGER });
    },
    async event(view, reason, message) {
      const now = new Date().toISOString();
      const { namespace, name, uid } = view.metadata;
      await client.create(`/api/v1/namespaces/${namespace}/events`, {
        apiVersion: "v1",
        kind: "Event",
        metadata: { generateName: `${name}.`, namespace },
        involvedObject: { apiVersion: "apps/v1", kind: view.kind, namespace, name, uid },
        reason,
        message,
        type: "Normal",
        source: { component },
        reportingComponent: component,
        reportingInstance: Deno.hostname(),
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      });
    },
  };
}

/** What {@link startTrustRestart} needs. */
export interface StartTrustRestartOptions {
  /** The API client. */
  client: KubeClient;
  /** CSI driver name (whose inline volumes count). */
  driverName: string;
  /** The class the webhook injects. */
  className: string;
  /** Settle delay (ms). */
  settleMs?: number;
  /** Least time between two rollouts of one workload (ms). */
  intervalMs?: number;
  /** Where events go. */
  log: Logger;
  /** Where counts go. */
  metrics?: Registry;
}

/** Starts the controller on a cluster: informers on apps/v1 workloads, namespaces and classes. */
export async function startTrustRestart(
  options: StartTrustRestartOptions,
): Promise<TrustRestartController> {
  const { client, log, driverName } = options;
  const kinds = Object.keys(WORKLOAD_PLURALS) as WorkloadKind[];
  const controller = new TrustRestartController({
    workloads: informerFeed(
      client,
      "workloads",
      kinds.map((kind) => ({
        path: resourcePath({ group: "apps", version: "v1", plural: WORKLOAD_PLURALS[kind] }),
        transform: (o: KubeObject) => workloadView(kind, o, driverName),
      })),
      log,
    ),
    namespaces: informerFeed(client, "namespaces", [{
      path: "/api/v1/namespaces",
      transform: namespaceView,
    }], log),
    classes: informerFeed(client, "CAProviderClasses", [{
      path: resourcePath({ group: CLASS_GROUP, version: CLASS_VERSION, plural: CLASS_PLURAL }),
      transform: classTrust,
    }], log),
    writer: kubeWorkloadWriter(client, "spire-cacerts-webhook"),
    className: options.className,
    settleMs: options.settleMs,
    intervalMs: options.intervalMs,
    log,
    metrics: options.metrics,
  });
  await controller.start();
  return controller;
}
