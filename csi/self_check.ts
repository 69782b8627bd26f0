/**
 * The in-memory self-test behind `--self-test`: renders a trust store from a freshly generated CA
 * with the engine, and answers an Identity call over a temporary unix socket.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { join } from "node:path";
import { DEFAULT_OS_FAMILY, storeFiles } from "../api/mod.ts";
import { buildTrustSet, renderTrustStore } from "../trust_store/mod.ts";
import { createLogger } from "../cli/mod.ts";
import { identityService } from "./proto.ts";
import { startCsiServer } from "./server.ts";

/** The self-test failed. */
export class SelfTestError extends Error {
  /** @param message what did not work */
  constructor(message: string) {
    super(message);
    this.name = "SelfTestError";
  }
}

/** Generates a self-signed CA certificate as PEM. */
export async function generateCaPem(commonName: string): Promise<string> {
  // Loaded only here: @peculiar/x509 (and the Reflect shim it needs) would add 13 MB resident
  // and 0.1 s of start-up to the driver (bench/driver_memory_bench.ts; tests/csi_imports_test.ts).
  const { x509 } = await import("../x509/mod.ts");
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01" +
      crypto.getRandomValues(new Uint8Array(8)).reduce(
        (s, b) => s + b.toString(16).padStart(2, "0"),
        "",
      ),
    name: `CN=${commonName}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3600_000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
    ],
  });
  return cert.toString("pem");
}

/**
 * Runs the self-test.
 *
 * @throws {SelfTestError} when a step does not give the expected result
 */
export async function runSelfTest(driverName: string, version: string): Promise<void> {
  const pem = await generateCaPem("spire-cacerts self-test CA");
  const set = await buildTrustSet([{ name: "self-test CA", text: pem }]);
  if (set.certificates.length !== 1) throw new SelfTestError("trust set should hold the CA");
  const payload = await renderTrustStore(DEFAULT_OS_FAMILY, set);
  const bundlePath = storeFiles(DEFAULT_OS_FAMILY).bundle;
  const bundle = payload.get(bundlePath);
  if (
    !bundle || !new TextDecoder().decode(bundle as Uint8Array).includes(pem.trim().split("\n")[1])
  ) {
    throw new SelfTestError(`rendered ${bundlePath} does not hold the CA`);
  }
  const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-self-test-" });
  const socketPath = join(dir, "csi.sock");
  const server = await startCsiServer({
    endpoint: `unix://${socketPath}`,
    driverName,
    version,
    nodeId: "self-test",
    logger: createLogger("error"),
  });
  const Client = grpc.makeGenericClientConstructor(identityService, "Identity");
  const client = new Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
  try {
    const info = await new Promise<{ name: string }>((resolve, reject) =>
      (client as unknown as {
        GetPluginInfo(req: object, cb: (e: Error | null, r: { name: string }) => void): void;
      }).GetPluginInfo({}, (e, r) => e ? reject(e) : resolve(r))
    );
    if (info.name !== driverName) throw new SelfTestError(`GetPluginInfo said ${info.name}`);
  } finally {
    client.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
