/**
 * The webhook's metrics: admissions by result, a latency histogram of `/mutate`, refused requests
 * by reason, counters of serving-certificate updates, reload failures and TLS handshake failures
 * (by a bounded reason), the served certificate's notAfter, and controller writes, on the shared
 * Prometheus registry.
 *
 * The expiry is a timestamp gauge rather than "seconds left" so that an alert is one expression
 * (`spire_cacerts_webhook_svid_expiry_timestamp_seconds - time() < 600`) and the value only
 * changes when the certificate does.
 *
 * @module
 */

import { Registry } from "../prometheus/mod.ts";
import type { AdmissionEvent, RefusalReason } from "./app.ts";
import type { HandshakeFailureReason } from "./handshake_failures.ts";

/** Latency bucket bounds in seconds. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

const ADMISSIONS = "spire_cacerts_webhook_admissions_total";
const DURATION = "spire_cacerts_webhook_admission_duration_seconds";
const SVID_UPDATES = "spire_cacerts_webhook_svid_updates_total";
const CLASSES = "spire_cacerts_webhook_classes_applied_total";
const BUNDLES = "spire_cacerts_webhook_bundle_writes_total";
const REFUSED = "spire_cacerts_webhook_requests_refused_total";
const RELOAD_FAILURES = "spire_cacerts_webhook_svid_reload_failures_total";
const EXPIRY = "spire_cacerts_webhook_svid_expiry_timestamp_seconds";
const HANDSHAKE_FAILURES = "spire_cacerts_webhook_tls_handshake_failures_total";

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
    r.define(
      RELOAD_FAILURES,
      "counter",
      "Reads of the SVID files rejected after the torn-write grace; the last good SVID stays.",
    );
    r.define(EXPIRY, "gauge", "notAfter of the served certificate, in Unix seconds.");
    r.define(
      HANDSHAKE_FAILURES,
      "counter",
      "TLS handshakes on the HTTPS port that failed, by reason.",
    );
    // Unlabelled counters are shown as 0 from the start, as before.
    for (const name of [SVID_UPDATES, CLASSES, BUNDLES, RELOAD_FAILURES]) r.set(name, 0);
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

  /** Records one rejected read of the SVID files. */
  svidReloadFailed(): void {
    this.registry.inc(RELOAD_FAILURES);
  }

  /** Records the notAfter of the certificate now served. */
  svidServed(notAfter: Date): void {
    this.registry.set(EXPIRY, notAfter.getTime() / 1000);
  }

  /** Records one failed TLS handshake by its reason. */
  tlsHandshakeFailed(reason: HandshakeFailureReason): void {
    this.registry.inc(HANDSHAKE_FAILURES, { reason });
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
