/**
 * The webhook's metrics: admissions by result, a latency histogram of `/mutate`, refused requests
 * by reason, and counters of serving-certificate updates and controller writes, on the shared
 * Prometheus registry.
 *
 * @module
 */

import { Registry } from "../prometheus/mod.ts";
import type { AdmissionEvent, RefusalReason } from "./app.ts";

/** Latency bucket bounds in seconds. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

const ADMISSIONS = "spire_cacerts_webhook_admissions_total";
const DURATION = "spire_cacerts_webhook_admission_duration_seconds";
const SVID_UPDATES = "spire_cacerts_webhook_svid_updates_total";
const CLASSES = "spire_cacerts_webhook_classes_applied_total";
const BUNDLES = "spire_cacerts_webhook_bundle_writes_total";
const REFUSED = "spire_cacerts_webhook_requests_refused_total";

/** Counters and a latency histogram of admissions, plus SVID and controller counters. */
export class WebhookMetrics {
  /** The underlying registry (for extra families). */
  readonly registry: Registry = new Registry();

  constructor() {
    const r = this.registry;
    r.define(ADMISSIONS, "counter", "AdmissionReviews answered, by result.");
    r.define(DURATION, "histogram", "Time spent answering /mutate.", { buckets: LATENCY_BUCKETS });
    r.define(SVID_UPDATES, "counter", "Serving certificates taken into use.");
    r.define(CLASSES, "counter", "CAProviderClasses created or updated.");
    r.define(BUNDLES, "counter", "Writes of the SPIRE CA bundle Secret.");
    r.define(REFUSED, "counter", "Requests refused with a 4xx and no AdmissionReview, by reason.");
    // Unlabelled counters are shown as 0 from the start, as before.
    for (const name of [SVID_UPDATES, CLASSES, BUNDLES]) r.set(name, 0);
  }

  /** Records one `/mutate` call. */
  observe(event: AdmissionEvent): void {
    this.registry.inc(ADMISSIONS, { result: event.result });
    this.registry.observe(DURATION, event.seconds);
  }

  /** Records one refused request (a 4xx) by its reason. */
  refused(reason: RefusalReason): void {
    this.registry.inc(REFUSED, { reason });
  }

  /** Records a new serving certificate taken into use. */
  svidUpdated(): void {
    this.registry.inc(SVID_UPDATES);
  }

  /** Records a CAProviderClass written. */
  classApplied(): void {
    this.registry.inc(CLASSES);
  }

  /** Records a bundle Secret write. */
  bundleWritten(): void {
    this.registry.inc(BUNDLES);
  }

  /** The exposition text (`text/plain; version=0.0.4`). */
  render(): string {
    return this.registry.render();
  }
}
