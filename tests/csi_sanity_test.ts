import assert from "node:assert/strict";
import { join } from "node:path";
import { needsTools, runCommand, toolPath } from "./harness/mod.ts";
import { startDriverProcess, writeUnusedKubeconfig } from "./harness/driver_process.ts";

/**
 * Specs that do not apply to a node-only driver of ephemeral inline volumes:
 * - `[Controller Server]`: no Controller service (GetPluginCapabilities lists none).
 * - `should remove target path`: kubelet removes the target dir after NodeUnpublishVolume; the
 *   driver must leave it (empty) for kubelet, so this spec's expectation is the opposite.
 * - `should fail when volume does not exist on the specified path`: it first calls CreateVolume
 *   (Controller service), which a node-only driver does not serve.
 * The specs that publish (`should work`, `should be idempotent`) skip themselves without a
 * Controller service; ephemeral publishes are covered with csc in csi_kube_test.ts. None of the
 * specs that run send a volume_context, so no test-only relaxation of validation is needed.
 */
const SKIP = [
  String.raw`\[Controller Server\]`,
  "should remove target path",
  "should fail when volume does not exist on the specified path",
].join("|");

Deno.test({
  name: "csi-sanity passes every spec that applies to a node-only ephemeral driver",
  ...needsTools(["csi-sanity"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-sanity-" });
    const kubeconfig = join(dir, "kubeconfig");
    await writeUnusedKubeconfig(kubeconfig);
    const driver = await startDriverProcess({
      dir,
      kubeconfigPath: kubeconfig,
      args: ["--plain-dir"],
    });
    try {
      const out = await runCommand([
        toolPath("csi-sanity"),
        `-csi.endpoint=${driver.endpoint}`,
        `-csi.mountdir=${join(dir, "mnt")}`,
        `-csi.stagingdir=${join(dir, "staging")}`,
        `-ginkgo.skip=${SKIP}`,
        "-ginkgo.no-color",
        "-ginkgo.v",
      ]);
      const summary = out.stdout.match(
        /Ran (\d+) of (\d+) Specs[\s\S]*?(\d+) Passed \| (\d+) Failed/,
      );
      assert.equal(out.code, 0, out.stdout.slice(-4000) + driver.process.logTail());
      assert.ok(summary, out.stdout.slice(-2000));
      assert.equal(summary[4], "0");
      console.log(summary[0].replace(/\s+/g, " "));
      assert.ok(Number(summary[3]) >= 10, `only ${summary[3]} specs passed`);
      driver.process.assertRunning();
      await driver.process.stop();
      assert.equal(driver.process.exitCode, 0, driver.process.logTail());
      // Graceful stop removes the socket.
      await assert.rejects(Deno.stat(driver.socketPath), Deno.errors.NotFound);
    } finally {
      await driver.process.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
