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
import { parseArgs } from "node:util";
import { parseDuration } from "./log.ts";
import { type ClientOptions, parseServerAddress, runClient } from "./tls_client.ts";

export * from "./tls_client.ts";

/** Version printed by `--version`. */
export const VERSION = "0.1.0";

const HELP = `usage: client [--cert-dir DIR] [--system-certs=true|false] [--system-ca-file FILE]
              [--server-address https://server-service:8443] [--server-name NAME]
              [--interval 1s] [--count 0]

Requests --server-address on a new TLS connection every --interval and logs the server's
certificate (Subject, Not Before, Not After, Time until expiration) on stderr, each line
prefixed with the local date and time as Go's log package writes it. A failed request logs one
line with the cause and the client keeps going.

  --cert-dir DIR          spiffe-helper directory (svid.pem, svid_key.pem, svid_bundle.pem);
                          default /run/spiffe/certs. Its SVID is presented as client certificate.
  --system-certs BOOL     true: trust ONLY the OS trust store file (the CSI volume);
                          false (default): trust svid_bundle.pem from --cert-dir
  --system-ca-file FILE   OS trust store file; default /etc/ssl/certs/ca-certificates.crt
  --server-address URL    default https://server-service:8443 (host:port also accepted)
  --server-name NAME      name verified against the certificate (default: the address's host)
  --interval DURATION     default 1s (e.g. 100ms, 2s)
  --count N               requests to make; 0 (default) = until stopped
  --help, --version, --self-test`;

function parseBool(value: string, flag: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new RangeError(`--${flag}: expected true or false, got ${JSON.stringify(value)}`);
}

/**
 * Command-line entry point.
 *
 * @param args command-line arguments
 * @returns exit code
 */
export async function main(args: string[]): Promise<number> {
  // `--system-certs` alone means true, as Go's flag package treats booleans.
  args = args.map((arg) => (arg === "--system-certs" ? "--system-certs=true" : arg));
  let options: ClientOptions;
  try {
    const { values } = parseArgs({
      args,
      options: {
        "cert-dir": { type: "string", default: "/run/spiffe/certs" },
        "system-certs": { type: "string", default: "false" },
        "system-ca-file": { type: "string", default: "/etc/ssl/certs/ca-certificates.crt" },
        "server-address": { type: "string", default: "https://server-service:8443" },
        "server-name": { type: "string" },
        interval: { type: "string", default: "1s" },
        count: { type: "string", default: "0" },
        help: { type: "boolean" },
        version: { type: "boolean" },
        "self-test": { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (values.version) {
      console.log(`spire-cacerts-client ${VERSION}`);
      return 0;
    }
    if (values["self-test"]) {
      const { selfTest } = await import("./self_check.ts");
      await selfTest();
      console.log("spire-cacerts-client self-test ok");
      return 0;
    }
    const count = Number(values.count);
    if (!Number.isInteger(count) || count < 0) {
      throw new RangeError(`--count must be a non-negative integer, got ${values.count}`);
    }
    const systemCerts = parseBool(values["system-certs"]!, "system-certs");
    const certDir = values["cert-dir"]!;
    options = {
      url: parseServerAddress(values["server-address"]!),
      serverName: values["server-name"],
      trustFile: systemCerts ? values["system-ca-file"]! : join(certDir, "svid_bundle.pem"),
      certDir,
      systemCerts,
      intervalMs: parseDuration(values.interval!, "interval"),
      count,
    };
  } catch (error) {
    console.error(`client: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
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
