/**
 * Prometheus text exposition for the webhook, written by hand: the format is a few lines of
 * text, and no client library is among the project's dependencies.
 *
 * @module
 */

import type { AdmissionEvent } from "./app.ts";

/** Latency bucket bounds in seconds. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Counters and a latency histogram of admissions, plus SVID and controller counters. */
export class WebhookMetrics {
  #admissions = new Map<string, number>();
  #buckets = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  #count = 0;
  #sum = 0;
  #svidUpdates = 0;
  #classesApplied = 0;
  #bundleWrites = 0;

  /** Records one `/mutate` call. */
  observe(event: AdmissionEvent): void {
    this.#admissions.set(event.result, (this.#admissions.get(event.result) ?? 0) + 1);
    this.#count++;
    this.#sum += event.seconds;
    LATENCY_BUCKETS.forEach((bound, i) => {
      if (event.seconds <= bound) this.#buckets[i]++;
    });
  }

  /** Records a new serving certificate taken into use. */
  svidUpdated(): void {
    this.#svidUpdates++;
  }

  /** Records a CAProviderClass written. */
  classApplied(): void {
    this.#classesApplied++;
  }

  /** Records a bundle Secret write. */
  bundleWritten(): void {
    this.#bundleWrites++;
  }

  /** The exposition text (`text/plain; version=0.0.4`). */
  render(): string {
    const lines = [
      "# HELP spire_cacerts_webhook_admissions_total AdmissionReviews answered, by result.",
      "# TYPE spire_cacerts_webhook_admissions_total counter",
      ...[...this.#admissions].sort().map(([result, n]) =>
        `spire_cacerts_webhook_admissions_total{result="${result}"} ${n}`
      ),
      "# HELP spire_cacerts_webhook_admission_duration_seconds Time spent answering /mutate.",
      "# TYPE spire_cacerts_webhook_admission_duration_seconds histogram",
      ...LATENCY_BUCKETS.map((bound, i) =>
        `spire_cacerts_webhook_admission_duration_seconds_bucket{le="${bound}"} ${this.#buckets[i]}`
      ),
      `spire_cacerts_webhook_admission_duration_seconds_bucket{le="+Inf"} ${this.#count}`,
      `spire_cacerts_webhook_admission_duration_seconds_sum ${this.#sum}`,
      `spire_cacerts_webhook_admission_duration_seconds_count ${this.#count}`,
      "# HELP spire_cacerts_webhook_svid_updates_total Serving certificates taken into use.",
      "# TYPE spire_cacerts_webhook_svid_updates_total counter",
      `spire_cacerts_webhook_svid_updates_total ${this.#svidUpdates}`,
      "# HELP spire_cacerts_webhook_classes_applied_total CAProviderClasses created or updated.",
      "# TYPE spire_cacerts_webhook_classes_applied_total counter",
      `spire_cacerts_webhook_classes_applied_total ${this.#classesApplied}`,
      "# HELP spire_cacerts_webhook_bundle_writes_total Writes of the SPIRE CA bundle Secret.",
      "# TYPE spire_cacerts_webhook_bundle_writes_total counter",
      `spire_cacerts_webhook_bundle_writes_total ${this.#bundleWrites}`,
    ];
    return lines.join("\n") + "\n";
  }
}
