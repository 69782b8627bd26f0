/**
 * What the trust-restart controller does with one workload, as pure functions of what it knows:
 * which CAProviderClasses the workload's pods use ({@link templateClasses}), whether the workload
 * asked for restarts ({@link restartSetting}), and the decision ({@link planTrustRestart}).
 *
 * Go reads the system roots once per process, Java its truststore once, Node its extra CAs at
 * start: a live-updated store does not reach them. When SPIRE prepares a CA it is added to the
 * bundle well before it signs anything, so rolling such workloads out when their CA set *gains* a
 * certificate lets their new pods trust it in time. The rules:
 *
 * - The baseline is the workload's {@link WORKLOAD_ANNOTATIONS.trustedFingerprints} annotation:
 *   the CA set its pods were last started with. A workload seen for the first time gets the
 *   current set recorded and is not restarted (its pods started with what the store holds now).
 * - Only a gain counts: a certificate in the classes' current set that is not in the baseline.
 *   A removal alone (an expired or revoked CA leaving the bundle) restarts nothing and keeps the
 *   baseline, since the running pods still trust the removed CA.
 * - A gain is acted on after a settle delay counted from when it was first seen, so several
 *   changes inside the delay make one rollout; and at most once per interval per workload,
 *   counted from the pod template's {@link ANNOTATIONS.trustRestartedAt} (shared by every
 *   replica of the webhook, and kept across its restarts).
 * - Nothing happens while any of the workload's classes is unknown or not `Ready` (its status
 *   not yet written for the current generation): a decision needs the whole set.
 *
 * @module
 */

import {
  ANNOTATION_PREFIX,
  ANNOTATIONS,
  CLASSES_ATTRIBUTE,
  INJECT_LABEL,
  type ObjectName,
  parseClassList,
  WORKLOAD_ANNOTATIONS,
} from "../api/mod.ts";

/** Default settle delay (ms): changes inside it make one rollout. */
export const DEFAULT_SETTLE_MS = 30_000;
/** Default least time between two trust rollouts of one workload (ms). */
export const DEFAULT_INTERVAL_MS = 5 * 60_000;

/** The workload kinds the controller rolls out. */
export type WorkloadKind = "Deployment" | "StatefulSet" | "DaemonSet";

/** An inline CSI volume of a pod template, as far as the controller reads it. */
export interface TemplateVolume {
  /** The CSI driver. */
  driver: string;
  /** The volume's `caProviderClasses` attribute, when set. */
  classes?: string;
}

/** The fields of a workload the controller reads and keeps (see {@link workloadView}). */
export interface WorkloadView {
  /** Deployment, StatefulSet or DaemonSet. */
  kind: WorkloadKind;
  /** Identity and the annotations under {@link ANNOTATION_PREFIX}. */
  metadata: {
    namespace: string;
    name: string;
    uid?: string;
    resourceVersion: string;
    annotations: Record<string, string>;
  };
  /** The pod template: its injection label, its annotations under the prefix, its CSI volumes. */
  template: {
    injectLabel?: string;
    annotations: Record<string, string>;
    volumes: TemplateVolume[];
  };
}

/** The string annotations under {@link ANNOTATION_PREFIX} of an object's `metadata.annotations`. */
export function prefixedAnnotations(annotations: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof annotations !== "object" || annotations === null) return out;
  for (const [key, value] of Object.entries(annotations)) {
    if (key.startsWith(ANNOTATION_PREFIX) && typeof value === "string") out[key] = value;
  }
  return out;
}

/**
 * The {@link WorkloadView} of a Deployment, StatefulSet or DaemonSet as the API server returns
 * it: a few hundred bytes instead of the whole object, which is what the controller's caches
 * hold. Only the CSI volumes of `driverName` are kept.
 */
export function workloadView(
  kind: WorkloadKind,
  object: Record<string, unknown>,
  driverName: string,
): WorkloadView {
  const o = object as {
    metadata?: {
      namespace?: string;
      name?: string;
      uid?: string;
      resourceVersion?: string;
      annotations?: unknown;
    };
    spec?: {
      template?: {
        metadata?: { labels?: Record<string, unknown>; annotations?: unknown };
        spec?: { volumes?: { csi?: { driver?: string; volumeAttributes?: unknown } }[] };
      };
    };
  };
  const template = o.spec?.template;
  const label = template?.metadata?.labels?.[INJECT_LABEL];
  const volumes: TemplateVolume[] = [];
  for (const volume of template?.spec?.volumes ?? []) {
    if (volume?.csi?.driver !== driverName) continue;
    const attributes = volume.csi.volumeAttributes as Record<string, unknown> | undefined;
    const classes = attributes?.[CLASSES_ATTRIBUTE];
    volumes.push({
      driver: driverName,
      ...(typeof classes === "string" ? { classes } : {}),
    });
  }
  return {
    kind,
    metadata: {
      namespace: o.metadata?.namespace ?? "",
      name: o.metadata?.name ?? "",
      ...(o.metadata?.uid ? { uid: o.metadata.uid } : {}),
      resourceVersion: o.metadata?.resourceVersion ?? "",
      annotations: prefixedAnnotations(o.metadata?.annotations),
    },
    template: {
      ...(typeof label === "string" ? { injectLabel: label } : {}),
      annotations: prefixedAnnotations(template?.metadata?.annotations),
      volumes,
    },
  };
}

/**
 * The CAProviderClasses the workload's pods mount: those its own CSI volumes of the driver name
 * in `caProviderClasses`, else — for a template with the injection label, not opted out — the
 * class the webhook injects (`className` in the workload's namespace). Entries that do not parse
 * are left out (the driver refuses such a volume anyway).
 */
export function templateClasses(view: WorkloadView, className: string): ObjectName[] {
  const namespace = view.metadata.namespace;
  const out: ObjectName[] = [];
  const seen = new Set<string>();
  const add = (name: ObjectName) => {
    const key = `${name.namespace}/${name.name}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(name);
    }
  };
  for (const volume of view.template.volumes) {
    if (volume.classes === undefined) continue;
    try {
      for (const name of parseClassList(volume.classes, namespace)) add(name);
    } catch {
      // Not a usable list: the driver refuses the volume; nothing to restart for.
    }
  }
  if (view.template.volumes.length > 0) return out;
  const optedOut = view.template.annotations[ANNOTATION_PREFIX + ANNOTATIONS.inject] === "false";
  if (view.template.injectLabel === "true" && !optedOut) add({ namespace, name: className });
  return out;
}

/** What {@link restartSetting} found. */
export interface RestartSetting {
  /** Whether the workload is rolled out on a gain. */
  enabled: boolean;
  /** An annotation value that is neither `"true"` nor `"false"` (it counts as unset). */
  invalid?: { on: "workload" | "namespace"; value: string };
}

/**
 * Whether a workload asked for restarts: its own
 * {@link WORKLOAD_ANNOTATIONS.restartOnTrustChange} annotation, else its namespace's.
 *
 * @param workload the workload's annotations
 * @param namespace the namespace's annotations (undefined while the namespace is not known)
 */
export function restartSetting(
  workload: Record<string, string>,
  namespace: Record<string, string> | undefined,
): RestartSetting {
  const key = ANNOTATION_PREFIX + WORKLOAD_ANNOTATIONS.restartOnTrustChange;
  const own = workload[key];
  if (own === "true" || own === "false") return { enabled: own === "true" };
  const inherited = namespace?.[key];
  const invalid = own !== undefined
    ? { on: "workload" as const, value: own }
    : inherited !== undefined && inherited !== "true" && inherited !== "false"
    ? { on: "namespace" as const, value: inherited }
    : undefined;
  return { enabled: inherited === "true" && own === undefined, ...(invalid ? { invalid } : {}) };
}

/** A certificate the workload's classes gained, and the classes that hold it. */
export interface Gain {
  /** Lower-case hex SHA-256 of its DER. */
  fingerprint: string;
  /** The workload's classes whose set holds it. */
  classes: ObjectName[];
}

/** Inputs of {@link planTrustRestart}. */
export interface RestartInputs {
  /** Whether the workload asked for restarts. */
  enabled: boolean;
  /** The classes its pods use ({@link templateClasses}). */
  classes: readonly ObjectName[];
  /** The fingerprints a class resolves to now; undefined when unknown or not Ready. */
  fingerprintsOf: (name: ObjectName) => readonly string[] | undefined;
  /** The recorded baseline; undefined when the workload has none yet. */
  recorded: readonly string[] | undefined;
  /** The last trust rollout (the template's annotation), if any. */
  lastRestart: Date | undefined;
  /** When the current gain was first seen; undefined when none was pending. */
  pendingSince: Date | undefined;
  /** Now. */
  now: Date;
  /** Settle delay (ms). */
  settleMs: number;
  /** Least time between two trust rollouts of one workload (ms). */
  intervalMs: number;
}

/** The outcome of {@link planTrustRestart}. */
export type RestartPlan =
  /** nothing to do: not enabled, no classes, a class unknown, or no gain */
  | { action: "none"; why: "disabled" | "no-classes" | "unknown-class" | "no-gain" }
  /** write the baseline (first sight), no rollout */
  | { action: "record"; fingerprints: string[] }
  /** a gain is pending: look again at `until` */
  | { action: "wait"; until: Date; gained: Gain[] }
  /** roll out now and record `fingerprints` as the new baseline */
  | { action: "restart"; fingerprints: string[]; gained: Gain[] };

/** The baseline annotation's value: fingerprints, comma-separated, in order. */
export function formatFingerprints(fingerprints: readonly string[]): string {
  return fingerprints.join(",");
}

/** Reads the baseline annotation; undefined when absent (an empty value is an empty set). */
export function parseFingerprints(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value.split(",").map((s) => s.trim().toLowerCase()).filter((s) =>
    /^[0-9a-f]{64}$/.test(s)
  );
}

/** Reads the template's last-rollout annotation; undefined when absent or not a time. */
export function lastTrustRestart(view: WorkloadView): Date | undefined {
  const value = view.template.annotations[ANNOTATION_PREFIX + ANNOTATIONS.trustRestartedAt];
  if (value === undefined) return undefined;
  const time = new Date(value);
  return Number.isNaN(time.getTime()) ? undefined : time;
}

/** Decides what to do with one workload; see the module documentation. */
export function planTrustRestart(inputs: RestartInputs): RestartPlan {
  if (!inputs.enabled) return { action: "none", why: "disabled" };
  if (inputs.classes.length === 0) return { action: "none", why: "no-classes" };
  const holders = new Map<string, ObjectName[]>();
  for (const name of inputs.classes) {
    const set = inputs.fingerprintsOf(name);
    if (set === undefined) return { action: "none", why: "unknown-class" };
    for (const fingerprint of set) {
      const list = holders.get(fingerprint) ?? [];
      list.push(name);
      holders.set(fingerprint, list);
    }
  }
  const fingerprints = [...holders.keys()].sort();
  if (inputs.recorded === undefined) return { action: "record", fingerprints };
  const known = new Set(inputs.recorded);
  const gained = fingerprints.filter((f) => !known.has(f))
    .map((fingerprint) => ({ fingerprint, classes: holders.get(fingerprint)! }));
  if (gained.length === 0) return { action: "none", why: "no-gain" };
  const since = inputs.pendingSince ?? inputs.now;
  const settled = since.getTime() + inputs.settleMs;
  const allowed = inputs.lastRestart === undefined
    ? -Infinity
    : inputs.lastRestart.getTime() + inputs.intervalMs;
  const at = Math.max(settled, allowed);
  if (inputs.now.getTime() < at) return { action: "wait", until: new Date(at), gained };
  return { action: "restart", fingerprints, gained };
}
