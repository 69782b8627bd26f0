/**
 * Kubernetes API helpers shared by the programs: shared, reference-counted list+watch of single
 * objects (Secrets, ConfigMaps, CAProviderClasses, ClusterTrustBundles) and of selections of them
 * (ClusterTrustBundles by signer and labels), each re-listed after a failure with backoff.
 *
 * ```ts
 * import { KubeConfig } from "@kubernetes/client-node";
 * import { describeApiError, ObjectWatcher } from "./mod.ts";
 * const kc = new KubeConfig();
 * kc.loadFromDefault();
 * console.log(typeof ObjectWatcher, describeApiError(new Error("x")), kc.currentContext);
 * ```
 *
 * @module
 */

export * from "./object_watcher.ts";
export type { Logger } from "../cli/mod.ts";
