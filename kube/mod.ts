/**
 * Kubernetes API access shared by the programs: cluster settings from the in-cluster service
 * account or a kubeconfig file, a small JSON client with streamed watches, a typed API error, an
 * informer, and shared, reference-counted list+watch of single objects (Secrets, ConfigMaps,
 * CAProviderClasses, ClusterTrustBundles) and of selections of them (ClusterTrustBundles by
 * signer and labels), each re-listed after a failure with backoff.
 *
 * ```ts
 * import { describeApiError, KubeApiError, KubeClient, ObjectWatcher } from "./mod.ts";
 * const client = new KubeClient({ server: "https://127.0.0.1:6443", token: "t" });
 * const error = new KubeApiError("GET /api/v1/namespaces", 403, '{"message":"forbidden"}');
 * console.log(typeof ObjectWatcher, describeApiError(error), client.config.server);
 * client.close();
 * ```
 *
 * @module
 */

export * from "./api_error.ts";
export * from "./client.ts";
export * from "./config.ts";
export * from "./informer.ts";
export * from "./object_watcher.ts";
export type { Logger } from "../cli/mod.ts";
