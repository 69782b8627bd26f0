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

import {
  answerMode,
  type FlagTable,
  modeOf,
  parseFlagTable,
  renderFlags,
  VERSION,
} from "../cli/mod.ts";
import { parseSpiffeId, type PeerPolicy } from "../spire/mod.ts";
import { log } from "./log.ts";
import { type RunningServer, startServer } from "./tls_server.ts";

export * from "./tls_server.ts";

/** Version printed by `--version` (deno.json's). */
export { VERSION };

/** The command line: name, kind, default, check and help line of every flag. */
export const SERVER_FLAGS = {
  "cert-dir": {
    type: "string",
    arg: "DIR",
    default: "/run/spiffe/certs",
    help: "default {default}",
  },
  port: {
    type: "number",
    arg: "N",
    min: 0,
    max: 65535,
    default: "8443",
    help: "default {default}",
  },
  host: { type: "string", arg: "ADDR", default: "0.0.0.0", help: "default {default}" },
  "require-client-id": {
    type: "string",
    arg: "ID",
    parse: (text: string) => parseSpiffeId(text).toString(),
    help: "mTLS: accept only this client SPIFFE ID",
  },
  "require-trust-domain": {
    type: "string",
    arg: "TD",
    parse: (text: string) => (parseSpiffeId(`spiffe://${text}`), text),
    help: "mTLS: accept any client SPIFFE ID in this trust domain",
  },
  help: { type: "boolean", label: "--help, --version, --self-test", help: "" },
  version: { type: "boolean", hidden: true, help: "print the version" },
  "self-test": { type: "boolean", hidden: true, help: "check the TLS server in memory" },
} as const satisfies FlagTable;

const HELP = `usage: server [--cert-dir DIR] [--port 8443] [--host 0.0.0.0]
              [--require-client-id spiffe://td/path | --require-trust-domain td]

Serves HTTPS with the SPIFFE X.509-SVID spiffe-helper writes into --cert-dir (svid.pem,
svid_key.pem, svid_bundle.pem) and swaps to each rotated certificate without dropping
connections. With --require-client-id / --require-trust-domain it asks for a client certificate
(verified against svid_bundle.pem) and answers 403 to any other SPIFFE ID.

${renderFlags(SERVER_FLAGS)}`;

/**
 * Command-line entry point.
 *
 * @param args command-line arguments
 * @returns exit code
 */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseFlagTable(SERVER_FLAGS, args);
  } catch (error) {
    console.error(`server: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const answered = await answerMode(modeOf(values), {
    program: "spire-cacerts-server",
    version: VERSION,
    help: HELP,
    selfTest: async () => (await import("./self_check.ts")).selfTest(),
  });
  if (answered !== undefined) return answered;
  const port = values.port;
  const requireClient: PeerPolicy | undefined = values["require-client-id"]
    ? { id: values["require-client-id"] }
    : values["require-trust-domain"]
    ? { trustDomain: values["require-trust-domain"] }
    : undefined;
  log("info", "waiting for SVID", { certDir: values["cert-dir"] });
  let running: RunningServer;
  try {
    running = await startServer({
      certDir: values["cert-dir"],
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
