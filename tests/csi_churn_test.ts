import assert from "node:assert/strict";
import { join } from "node:path";
import { needsTools, runCommand, toolPath } from "./harness/mod.ts";
import { startDriverProcess, writeUnusedKubeconfig } from "./harness/driver_process.ts";

// kubelet opens a connection per CSI call and grpc-go sends GOAWAY on close; Deno 2.9's
// node:http2 server crashed under exactly this pattern, which is what pins Deno 2.8.3.
Deno.test({
  name: "the driver survives 1,000 grpc-go connect / 2 calls / close cycles",
  ...needsTools(["csi-churn"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-churn-" });
    const kubeconfig = join(dir, "kubeconfig");
    await writeUnusedKubeconfig(kubeconfig);
    const driver = await startDriverProcess({
      dir,
      kubeconfigPath: kubeconfig,
      args: ["--plain-dir", "--log-level=warn"],
    });
    try {
      const out = await runCommand([
        toolPath("csi-churn"),
        `-endpoint=${driver.endpoint}`,
        "-cycles=1000",
      ]);
      assert.equal(out.code, 0, out.stderr + driver.process.logTail());
      assert.match(out.stdout, /1000 cycles ok/);
      driver.process.assertRunning();
      const health = await fetch(`${driver.healthUrl}/healthz`);
      assert.equal(await health.text(), "ok\n");
    } finally {
      await driver.process.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
