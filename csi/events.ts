/**
 * Kubernetes Events about a pod's trust store: the {@link EventRecorder} the node server reports
 * through, and {@link KubeEventRecorder}, which creates `core/v1` Events with the driver as source
 * component and the node as host. Recording is best effort; the caller logs a failure.
 *
 * @module
 */

import type { PodRef } from "./validation.ts";

/** Reason of the Warning Event for an update refused while the last good store is kept. */
export const UPDATE_FAILED_REASON = "TrustStoreUpdateFailed";
/**
 * Reason of the Warning Event for a first publish refused because the driver may not read a
 * source (403): its message names the namespace and the RoleBinding that grants the read.
 */
export const SOURCE_FORBIDDEN_REASON = "TrustStoreSourceForbidden";

/**
 * Reason of the Warning Event for a store written without some certificates its sources hold
 * (expired, not yet valid, not a CA, an intermediate, or unloadable by OpenSSL 3): one Event per
 * volume and distinct set of dropped certificates, naming each one's subject, SHA-256, source and
 * reason. Base roots are not named (the image's bundle is not the pod owner's to fix).
 */
export const CERTIFICATE_DROPPED_REASON = "TrustStoreCertificateDropped";

/** One Event about a pod. */
export interface PodEvent {
  /** The pod. */
  pod: PodRef;
  /** `Normal` or `Warning`. */
  type: "Normal" | "Warning";
  /** CamelCase reason, e.g. {@link UPDATE_FAILED_REASON}. */
  reason: string;
  /** What happened (cut to the API's 1 000 characters by the recorder). */
  message: string;
}

/** Where the node server sends Events. */
export interface EventRecorder {
  /** Records an Event; rejects when it could not be recorded. */
  record(event: PodEvent): Promise<void>;
}

/** The `core/v1` Event as {@link KubeEventRecorder} creates it. */
export interface EventBody {
  /** `generateName: <pod>.` in the pod's namespace. */
  metadata: { generateName: string; namespace: string };
  /** The pod. */
  involvedObject: {
    apiVersion: string;
    kind: string;
    namespace: string;
    name: string;
    uid?: string;
  };
  /** CamelCase reason. */
  reason: string;
  /** At most 1 000 characters. */
  message: string;
  /** `Normal` or `Warning`. */
  type: string;
  /** The driver on the node. */
  source: { component: string; host: string };
  /** The driver name. */
  reportingComponent: string;
  /** The node id. */
  reportingInstance: string;
  /** When it happened (both timestamps). */
  firstTimestamp: Date;
  /** When it happened (both timestamps). */
  lastTimestamp: Date;
  /** Always 1. */
  count: number;
}

/** The one API call the recorder makes (`POST /api/v1/namespaces/NS/events`). */
export interface EventsApi {
  /** Creates an Event in `namespace`. */
  createNamespacedEvent(param: { namespace: string; body: EventBody }): Promise<unknown>;
}

/** Options for {@link KubeEventRecorder}. */
export interface KubeEventRecorderOptions {
  /** The API client Events are created with. */
  core: EventsApi;
  /** CSI driver name (source component, reporting component). */
  driverName: string;
  /** Node id (source host, reporting instance). */
  nodeId: string;
  /** Clock for the Event timestamps (default `() => new Date()`). */
  now?: () => Date;
}

/** Records Events in the pod's namespace through the API server. */
export class KubeEventRecorder implements EventRecorder {
  readonly #opts: KubeEventRecorderOptions;

  /**
   * Makes a recorder.
   *
   * @param options API client, driver name, node id and clock
   */
  constructor(options: KubeEventRecorderOptions) {
    this.#opts = options;
  }

  /** Creates the Event (`generateName: <pod>.`, count 1). */
  async record({ pod, type, reason, message }: PodEvent): Promise<void> {
    const { core, driverName, nodeId } = this.#opts;
    const now = (this.#opts.now ?? (() => new Date()))();
    await core.createNamespacedEvent({
      namespace: pod.namespace,
      body: {
        metadata: { generateName: `${pod.name}.`, namespace: pod.namespace },
        involvedObject: {
          apiVersion: "v1",
          kind: "Pod",
          namespace: pod.namespace,
          name: pod.name,
          uid: pod.uid || undefined,
        },
        reason,
        message: message.slice(0, 1000),
        type,
        source: { component: driverName, host: nodeId },
        reportingComponent: driverName,
        reportingInstance: nodeId,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  }
}
