/**
 * The node server's Prometheus metrics, defined in one place (names and help texts are in the
 * README's metrics table; alert on {@link UPDATE_FAILURES}).
 *
 * @module
 */

import type { Registry } from "../prometheus/mod.ts";

/** Gauge: volumes published now. */
export const VOLUMES = "cacerts_csi_volumes";
/** Gauge: Secrets, ConfigMaps and CAProviderClasses watched. */
export const WATCHED_OBJECTS = "cacerts_csi_watched_objects";
/** Counter by `result` (`ok`, `republish`, `error`). */
export const PUBLISH_TOTAL = "cacerts_csi_publish_total";
/** Counter by `result` (`ok`). */
export const UNPUBLISH_TOTAL = "cacerts_csi_unpublish_total";
/** Counter: trust stores swapped in. */
export const STORE_WRITES = "cacerts_csi_store_writes_total";
/** Counter by `reason` (`source`, `render`): updates refused, last good store kept. */
export const UPDATE_FAILURES = "cacerts_csi_update_failures_total";
/**
 * Counter by `reason` (a `DropReason`: `expired`, `not_yet_valid`, `non_ca`, `intermediate`,
 * `openssl_unloadable`): certificates a store was written without. Counted once per distinct
 * certificate and reason per volume (not again when the volume re-renders with it still dropped),
 * and once per driver process for a base root.
 */
export const CERTIFICATES_DROPPED = "cacerts_csi_certificates_dropped_total";
/** Counter: republish problems masked from kubelet. */
export const REPUBLISH_ERRORS = "cacerts_csi_republish_errors_total";

/**
 * Defines the node server's metrics in `registry`.
 *
 * @param registry where they are defined
 * @param gauges read at scrape time: volumes published and objects watched
 */
export function defineNodeMetrics(
  registry: Registry,
  gauges: { volumes: () => number; watchedObjects: () => number },
): void {
  registry.define(VOLUMES, "gauge", "Volumes currently published.", { collect: gauges.volumes });
  registry.define(WATCHED_OBJECTS, "gauge", "Objects watched.", {
    collect: gauges.watchedObjects,
  });
  registry.define(PUBLISH_TOTAL, "counter", "NodePublishVolume calls by result.");
  registry.define(UNPUBLISH_TOTAL, "counter", "NodeUnpublishVolume calls by result.");
  registry.define(STORE_WRITES, "counter", "Trust stores swapped in.");
  registry.define(
    UPDATE_FAILURES,
    "counter",
    "Updates rejected (last good store kept) by reason.",
  );
  registry.define(REPUBLISH_ERRORS, "counter", "Republish problems masked.");
  registry.define(
    CERTIFICATES_DROPPED,
    "counter",
    "Certificates left out of a volume's trust store, by reason (once per volume and certificate).",
  );
}
