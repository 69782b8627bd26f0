/**
 * In-memory check used by `--self-test` of the server and client: a dev CA issues an SVID into a
 * temporary directory, the server serves it on loopback, the client fetches and formats the
 * certificate, and everything is removed.
 *
 * @module
 */

import { join } from "node:path";
import { TrustSource } from "../spire/mod.ts";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { requestOnce } from "./tls_client.ts";
import { startServer } from "./tls_server.ts";

/** Thrown when the self-test does not see the expected certificate. */
export class SelfTestFailedError extends Error {
  /** @param reason what went wrong */
  constructor(reason: string) {
    super(`self-test failed: ${reason}`);
    this.name = "SelfTestFailedError";
  }
}

/**
 * Runs the check.
 *
 * @throws {SelfTestFailedError}
 */
export async function selfTest(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "spire-cacerts-selftest-" });
  try {
    const ca = await DevCa.create();
    const svid = await ca.issue({
      spiffeId: "spiffe://example.org/workload/server",
      dnsNames: ["server-service"],
      ttlMs: 60_000,
    });
    await writeSvidFiles(dir, { ...svid, bundlePem: ca.certPem });
    const server = await startServer({
      certDir: dir,
      port: 0,
      hostname: "127.0.0.1",
      logRotations: false,
    });
    try {
      const result = await requestOnce({
        url: new URL(`https://127.0.0.1:${server.port}/`),
        serverName: "server-service",
        trust: new TrustSource(join(dir, "svid_bundle.pem")),
      });
      if (!result.ok) throw new SelfTestFailedError(result.error);
      if (result.info.subject !== "CN=server-service, O=SPIRE, C=US") {
        throw new SelfTestFailedError(`unexpected subject ${result.info.subject}`);
      }
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
