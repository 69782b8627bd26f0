/**
 * Example HTTPS server that serves its SPIFFE X.509-SVID from spiffe-helper's files and takes
 * each rotated certificate live (`setSecureContext`): new handshakes get the new certificate,
 * established connections are not dropped. Optional mTLS authorises clients by SPIFFE ID.
 *
 * ```sh
 * deno run -A workloads/server.ts --cert-dir /run/spiffe/certs --port 8443 \
 *   --require-client-id spiffe://example.org/workload/client
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseSpiffeId, type PeerPolicy } from "../spire/mod.ts";
import { log } from "./log.ts";
import { type RunningServer, startServer } from "./tls_server.ts";

export * from "./tls_server.ts";

/** Version printed by `--version`. */
export const VERSION = "0.1.0";

const HELP = `usage: server [--cert-dir DIR] [--port 8443] [--host 0.0.0.0]
              [--require-client-id spiffe://td/path | --require-trust-domain td]

Serves HTTPS with the SPIFFE X.509-SVID spiffe-helper writes into --cert-dir (svid.pem,
svid_key.pem, svid_bundle.pem) and swaps to each rotated certificate without dropping
connections. With --require-client-id / --require-trust-domain it asks for a client certificate
(verified against svid_bundle.pem) and answers 403 to any other SPIFFE ID.

  --cert-dir DIR              default /run/spiffe/certs
  --port N                    default 8443
  --host ADDR                 default 0.0.0.0
  --require-client-id ID      mTLS: accept only this client SPIFFE ID
  --require-trust-domain TD   mTLS: accept any client SPIFFE ID in this trust domain
  --help, --version, --self-test`;

/**
 * Command-line entry point.
 *
 * @param args command-line arguments
 * @returns exit code
 */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        "cert-dir": { type: "string", default: "/run/spiffe/certs" },
        port: { type: "string", default: "8443" },
        host: { type: "string", default: "0.0.0.0" },
        "require-client-id": { type: "string" },
        "require-trust-domain": { type: "string" },
        help: { type: "boolean" },
        version: { type: "boolean" },
        "self-test": { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    console.error(`server: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.version) {
    console.log(`spire-cacerts-server ${VERSION}`);
    return 0;
  }
  if (values["self-test"]) {
    const { selfTest } = await import("./self_check.ts");
    await selfTest();
    console.log("spire-cacerts-server self-test ok");
    return 0;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`server: --port must be an integer from 0 to 65535, got ${values.port}`);
    return 2;
  }
  let requireClient: PeerPolicy | undefined;
  try {
    if (values["require-client-id"]) {
      requireClient = { id: parseSpiffeId(values["require-client-id"]).toString() };
    } else if (values["require-trust-domain"]) {
      requireClient = { trustDomain: values["require-trust-domain"] };
      parseSpiffeId(`spiffe://${values["require-trust-domain"]}`);
    }
  } catch (error) {
    console.error(`server: ${(error as Error).message}`);
    return 2;
  }
  log("info", "waiting for SVID", { certDir: values["cert-dir"] });
  let running: RunningServer;
  try {
    running = await startServer({
      certDir: values["cert-dir"]!,
      port,
      hostname: values.host,
      requireClient,
    });
  } catch (error) {
    log("error", "cannot start", { error: (error as Error).message });
    return 1;
  }
  log("info", "listening", { port: running.port, mtls: requireClient ?? false });
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  await running.close();
  log("info", "stopped");
  return 0;
}

if (import.meta.main) main(Deno.args).then((code) => Deno.exit(code));
