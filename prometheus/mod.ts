/**
 * Prometheus metrics for the CSI driver and the webhook: one hand-written registry of counters,
 * gauges and histograms rendered as text exposition format 0.0.4.
 *
 * ```ts
 * import { Registry } from "./mod.ts";
 *
 * const metrics = new Registry();
 * metrics.define("requests_total", "counter", "Requests by result.");
 * metrics.inc("requests_total", { result: "ok" });
 * console.log(metrics.render());
 * ```
 *
 * @module
 */

export {
  type DefineOptions,
  type Labels,
  MetricError,
  type MetricType,
  Registry,
} from "./registry.ts";
