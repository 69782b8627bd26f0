/**
 * The node server wired to the real collaborators: the kubeconfig's API server read through
 * `kube/`'s ObjectWatcher (a list+watch of each single object a volume uses), Events created
 * through the core API, tmpfs mounts on the host and volume records in `--state-dir`. Kept apart
 * from {@link NodeServer} so the core takes interfaces and unit tests hand it fakes, while
 * `main.ts` stays a few lines.
 *
 * @module
 */

import type { BaseRoots } from "../trust_store/mod.ts";
import type { Logger } from "../cli/mod.ts";
import type { Registry } from "../prometheus/mod.ts";
import { type KubeClient, ObjectWatcher, resourcePath } from "../kube/mod.ts";
import { KubeEventRecorder } from "./events.ts";
import { hostMounter } from "./mount.ts";
import { NodeServer } from "./node_server.ts";
import { StateStore } from "./state.ts";

/** Options for {@link createNodeDriver}. */
export interface NodeDriverOptions {
  /** CSI driver name (the Events' source). */
  driverName: string;
  /** Node id (the Events' host). */
  nodeId: string;
  /** Directory for volume records. */
  stateDir: string;
  /** Write into the target directory instead of mounting a tmpfs there. */
  plainDir: boolean;
  /** tmpfs size, e.g. `"8Mi"`. */
  tmpfsSize: string;
  /** Namespaces (besides the pod's own) that classes and refs may point into. */
  allowedRefNamespaces: readonly string[];
  /**
   * cert-manager's cluster resource namespace, where a ClusterIssuer's Secret is read
   * (`--cluster-resource-namespace`; default `cert-manager`).
   */
  clusterResourceNamespace?: string;
  /** Cluster access. */
  client: KubeClient;
  /** Structured logger. */
  logger: Logger;
  /** Metrics registry (one is created when omitted). */
  metrics?: Registry;
  /** Public roots added under the referenced CAs (default: none). */
  baseRoots?: BaseRoots;
  /** How many volumes are re-rendered at once after a change (default 32). */
  renderConcurrency?: number;
}

/**
 * Builds the node server on the cluster, the host's mounts and the state directory.
 *
 * @param options settings and cluster access
 * @returns the server; call {@link NodeServer.restore} before serving
 */
export function createNodeDriver(options: NodeDriverOptions): NodeServer {
  const { client, logger } = options;
  // The watcher reports to the server built on it; nothing changes before the first acquire.
  let changed = (_key: string): void => {};
  const objects = new ObjectWatcher({ client, logger, onChange: (key) => changed(key) });
  const server = new NodeServer({
    objects,
    events: new KubeEventRecorder({
      core: {
        createNamespacedEvent: ({ namespace, body }) =>
          client.create(
            resourcePath({ group: "", version: "v1", namespace, plural: "events" }),
            body,
          ),
      },
      driverName: options.driverName,
      nodeId: options.nodeId,
    }),
    mounter: hostMounter,
    state: new StateStore(options.stateDir),
    logger,
    plainDir: options.plainDir,
    tmpfsSize: options.tmpfsSize,
    allowedRefNamespaces: options.allowedRefNamespaces,
    clusterResourceNamespace: options.clusterResourceNamespace,
    metrics: options.metrics,
    baseRoots: options.baseRoots,
    renderConcurrency: options.renderConcurrency,
  });
  changed = (key) => server.objectChanged(key);
  return server;
}
