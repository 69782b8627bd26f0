import assert from "node:assert/strict";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { needsTools, runCommand, toolPath } from "./mod.ts";

interface PluginInfo {
  name: string;
  vendorVersion: string;
}

/**
 * Encodes csi.v1.GetPluginInfoResponse (name = 1, vendor_version = 2) by hand: this test needs one
 * two-string message, not a .proto toolchain.
 */
function encodePluginInfo(info: PluginInfo): Buffer {
  const field = (tag: number, text: string) => {
    const bytes = new TextEncoder().encode(text);
    assert.ok(bytes.length < 128, "single-byte length prefix");
    return [tag, bytes.length, ...bytes];
  };
  return Buffer.from([...field(0x0a, info.name), ...field(0x12, info.vendorVersion)]);
}

/** A gRPC server on a unix socket that serves only csi.v1.Identity/GetPluginInfo. */
async function startIdentityOnlyServer(socketPath: string, info: PluginInfo) {
  const server = new grpc.Server();
  const calls: string[] = [];
  server.addService({
    GetPluginInfo: {
      path: "/csi.v1.Identity/GetPluginInfo",
      requestStream: false,
      responseStream: false,
      requestSerialize: (value: Buffer) => value,
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: encodePluginInfo,
      responseDeserialize: () => info,
    },
  }, {
    GetPluginInfo: (
      _call: grpc.ServerUnaryCall<Buffer, PluginInfo>,
      callback: grpc.sendUnaryData<PluginInfo>,
    ) => {
      calls.push("GetPluginInfo");
      callback(null, info);
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(
      `unix://${socketPath}`,
      grpc.ServerCredentials.createInsecure(),
      (error) => error ? reject(error) : resolve(),
    )
  );
  return {
    calls,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

Deno.test({
  name: "csi-sanity and csc run, and csc talks to a grpc-js CSI endpoint",
  ...needsTools(["csi-sanity", "csc"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "spire-cacerts-csi-" });
    const socketPath = join(dir, "csi.sock");
    const endpoint = `unix://${socketPath}`;
    const csc = toolPath("csc");
    try {
      await t.step("csi-sanity --help lists its endpoint flag", async () => {
        const out = await runCommand([toolPath("csi-sanity"), "--help"]);
        assert.match(out.stdout + out.stderr, /csi\.endpoint/);
      });

      await t.step("csc --help lists its command groups", async () => {
        const out = await runCommand([csc, "--help"]);
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stdout, /identity/);
        assert.match(out.stdout, /node/);
      });

      await t.step("csc reports a clean error when nothing listens", async () => {
        const out = await runCommand([
          csc,
          "identity",
          "plugin-info",
          "--endpoint",
          endpoint,
          "--timeout",
          "3s",
        ]);
        assert.notEqual(out.code, 0);
        assert.match(out.stderr, /csi\.sock|connect|deadline|no such file/i);
      });

      const server = await startIdentityOnlyServer(socketPath, {
        name: "harness.test",
        vendorVersion: "0.0.1",
      });
      try {
        await t.step("csc gets GetPluginInfo from grpc-js", async () => {
          const out = await runCommand([
            csc,
            "identity",
            "plugin-info",
            "--endpoint",
            endpoint,
            "--timeout",
            "5s",
          ]);
          assert.equal(out.code, 0, out.stderr);
          assert.equal(out.stdout.trim(), '"harness.test"\t"0.0.1"');
          assert.deepEqual(server.calls, ["GetPluginInfo"]);
        });

        const sanity = (focus: string) =>
          runCommand([
            toolPath("csi-sanity"),
            `-csi.endpoint=${endpoint}`,
            `-csi.mountdir=${join(dir, "mnt")}`,
            `-csi.stagingdir=${join(dir, "staging")}`,
            `-ginkgo.focus=${focus}`,
            "-ginkgo.no-color",
          ]);

        await t.step("csi-sanity passes its GetPluginInfo spec against grpc-js", async () => {
          const out = await sanity("GetPluginInfo");
          assert.equal(out.code, 0, out.stdout.slice(-2000));
          assert.match(out.stdout, /Ran 1 of \d+ Specs/);
          assert.match(out.stdout, /1 Passed \| 0 Failed/);
        });

        await t.step("csi-sanity fails the Probe spec the server does not serve", async () => {
          const out = await sanity("Probe");
          assert.notEqual(out.code, 0);
          assert.match(out.stdout, /0 Passed \| 1 Failed/);
        });

        await t.step("csc reports Unimplemented for a method the server lacks", async () => {
          const out = await runCommand([
            csc,
            "node",
            "get-info",
            "--endpoint",
            endpoint,
            "--timeout",
            "5s",
          ]);
          assert.notEqual(out.code, 0);
          // csc prints the gRPC status message (grpc-js words for code UNIMPLEMENTED).
          assert.match(out.stderr, /does not implement the method \/csi\.v1\.Node\/NodeGetInfo/);
        });
      } finally {
        await server.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
