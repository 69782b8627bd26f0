/**
 * Example HTTPS client: one request per interval, a new TLS connection each time (keep-alive
 * off), and for every response the SERVER's certificate in the original client's format. It
 * trusts either only the OS trust store file the CSI volume provides (`--system-certs=true`) or
 * SPIRE's bundle from spiffe-helper (`--system-certs=false`), re-read whenever it changes. A
 * failed request is one line with the cause; the client keeps going.
 *
 * It logs as the original Go client did with Go's `log` package (see `cert_info.ts`): on stderr,
 * every line with the `YYYY/MM/DD HH:MM:SS ` local-time prefix — `Using system certificate trust
 * store` or `Using SPIRE trust store` at start, `Making request #N` before each request, then the
 * five report lines or the failure line.
 *
 * @module
 */

import { join } from "node:path";
import {
  answerMode,
  type FlagTable,
  modeOf,
  parseFlagTable,
  renderFlags,
  VERSION,
} from "../cli/mod.ts";
import { type ClientOptions, parseServerAddress, runClient } from "./tls_client.ts";

export * from "./tls_client.ts";

/** Version printed by `--version` (deno.json's). */
export { VERSION };

/** The command line: name, kind, default, check and help line of every flag. */
export const CLIENT_FLAGS = {
  "cert-dir": {
    type: "string",
    arg: "DIR",
    default: "/run/spiffe/certs",
    help: "spiffe-helper directory (svid.pem, svid_key.pem, svid_bundle.pem);\n" +
      "default {default}. Its SVID is presented as client certificate.",
  },
  "system-certs": {
    type: "boolean",
    arg: "BOOL",
    default: "false",
    help: "true: trust ONLY the OS trust store file (the CSI volume);\n" +
      "false (default): trust svid_bundle.pem from --cert-dir",
  },
  "system-ca-file": {
    type: "string",
    arg: "FILE",
    default: "/etc/ssl/certs/ca-certificates.crt",
    help: "OS trust store file; default {default}",
  },
  "server-address": {
    type: "string",
    arg: "URL",
    default: "https://server-service:8443",
    parse: parseServerAddress,
    help: "default {default} (host:port also accepted)",
  },
  "server-name": {
    type: "string",
    arg: "NAME",
    help: "name verified against the certificate (default: the address's host)",
  },
  interval: {
    type: "duration",
    arg: "DURATION",
    bareSeconds: true,
    allowZero: true,
    default: "1s",
    help: "default {default} (e.g. 100ms, 2s)",
  },
  count: {
    type: "number",
    arg: "N",
    min: 0,
    default: "0",
    help: "requests to make; 0 (default) = until stopped",
  },
  help: { type: "boolean", label: "--help, --version, --self-test", help: "" },
  version: { type: "boolean", hidden: true, help: "print the version" },
  "self-test": { type: "boolean", hidden: true, help: "check the TLS client in memory" },
} as const satisfies FlagTable;

const HELP = `usage: client [--cert-dir DIR] [--system-certs=true|false] [--system-ca-file FILE]
              [--server-address https://server-service:8443] [--server-name NAME]
              [--interval 1s] [--count 0]

Requests --server-address on a new TLS connection every --interval and logs the server's
certificate (Subject, Not Before, Not After, Time until expiration) on stderr, each line
prefixed with the local date and time as Go's log package writes it. A failed request logs one
line with the cause and the client keeps going.

${renderFlags(CLIENT_FLAGS, 24)}`;

/**
 * Command-line entry point.
 *
 * @param args command-line arguments
 * @returns exit code
 */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseFlagTable(CLIENT_FLAGS, args);
  } catch (error) {
    console.error(`client: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const answered = await answerMode(modeOf(values), {
    program: "spire-cacerts-client",
    version: VERSION,
    help: HELP,
    selfTest: async () => (await import("./self_check.ts")).selfTest(),
  });
  if (answered !== undefined) return answered;
  const systemCerts = values["system-certs"];
  const certDir = values["cert-dir"];
  const options: ClientOptions = {
    url: values["server-address"],
    serverName: values["server-name"],
    trustFile: systemCerts ? values["system-ca-file"] : join(certDir, "svid_bundle.pem"),
    certDir,
    systemCerts,
    intervalMs: values.interval,
    count: values.count,
  };
  const controller = new AbortController();
  const stop = () => controller.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const stats = await runClient({ ...options, signal: controller.signal });
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  return options.count !== 0 && stats.failed > 0 ? 1 : 0;
}

if (import.meta.main) main(Deno.args).then((code) => Deno.exit(code));
