/**
 * Kubernetes Events about a pod's trust store: the {@link EventRecorder} the node server reports
 * through, and {@link KubeEventRecorder}, which creates `core/v1` Events with the driver as source
 * component and the node as host. Recording is best effort; the caller logs a failure.
 *
 * @module
 */

import type { CoreV1Api } from "@kubernetes/client-node";
import type { PodRef } from "./validation.ts";

/** Reason of the Warning Event for an update refused while the last good store is kept. */
export const UPDATE_FAILED_REASON = "TrustStoreUpdateFailed";

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

/** Options for {@link KubeEventRecorder}. */
export interface KubeEventRecorderOptions {
  /** The API client Events are created with. */
  core: Pick<CoreV1Api, "createNamespacedEvent">;
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

  /** @param options API client, driver name, node id and clock */
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
