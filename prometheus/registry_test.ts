import assert from "node:assert/strict";
import { MetricError, Registry } from "./mod.ts";

Deno.test("registry renders counters and collected gauges with escaped labels", () => {
  const m = new Registry();
  let volumes = 3;
  m.define("cacerts_csi_volumes", "gauge", "Volumes currently published.", {
    collect: () => volumes,
  });
  m.define("cacerts_csi_update_failures_total", "counter", "Updates rejected.");
  m.inc("cacerts_csi_update_failures_total", { reason: 'bad "pem"\n' });
  m.inc("cacerts_csi_update_failures_total", { reason: 'bad "pem"\n' }, 2);
  volumes = 4;
  assert.equal(m.value("cacerts_csi_update_failures_total", { reason: 'bad "pem"\n' }), 3);
  assert.equal(
    m.render(),
    [
      "# HELP cacerts_csi_volumes Volumes currently published.",
      "# TYPE cacerts_csi_volumes gauge",
      "cacerts_csi_volumes 4",
      "# HELP cacerts_csi_update_failures_total Updates rejected.",
      "# TYPE cacerts_csi_update_failures_total counter",
      'cacerts_csi_update_failures_total{reason="bad \\"pem\\"\\n"} 3',
      "",
    ].join("\n"),
  );
});

Deno.test("registry histograms count cumulative buckets, sum and count per label set", () => {
  const m = new Registry();
  m.define("latency_seconds", "histogram", "Time spent.\nPer call.", { buckets: [0.01, 0.1] });
  for (const v of [0.005, 0.05, 0.5]) m.observe("latency_seconds", v, { path: "/mutate" });
  assert.equal(m.value("latency_seconds", { path: "/mutate" }), 3);
  assert.equal(
    m.render(),
    [
      "# HELP latency_seconds Time spent.\\nPer call.",
      "# TYPE latency_seconds histogram",
      'latency_seconds_bucket{path="/mutate",le="0.01"} 1',
      'latency_seconds_bucket{path="/mutate",le="0.1"} 2',
      'latency_seconds_bucket{path="/mutate",le="+Inf"} 3',
      'latency_seconds_sum{path="/mutate"} 0.555',
      'latency_seconds_count{path="/mutate"} 3',
      "",
    ].join("\n"),
  );
});

Deno.test("registry rejects undefined metrics, wrong operations and bucketless histograms", () => {
  const m = new Registry();
  m.define("c_total", "counter", "c");
  assert.throws(() => m.inc("nope"), MetricError);
  assert.throws(() => m.observe("c_total", 1), /c_total is a counter, not a histogram/);
  assert.throws(() => m.define("h", "histogram", "h"), /histogram h needs buckets/);
});
