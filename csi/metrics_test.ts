import assert from "node:assert/strict";
import { Metrics } from "./metrics.ts";

Deno.test("metrics render Prometheus text with escaped labels and collected gauges", () => {
  const m = new Metrics();
  let volumes = 3;
  m.define("cacerts_csi_volumes", "gauge", "Volumes currently published.", () => volumes);
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
  assert.throws(() => m.inc("nope"), /metric nope is not defined/);
});
