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

import https from "node:https";
import type { TLSSocket } from "node:tls";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SvidWatcher, TrustSource } from "../spire/mod.ts";
import {
  type CertificateInfo,
  certificateInfo,
  certificateInfoLines,
  goLogPrefix,
} from "./cert_info.ts";
import { parseDuration } from "./log.ts";

/** Version printed by `--version`. */
export const VERSION = "0.1.0";

/** Options for one request. */
export interface RequestOptions {
  /** `https://host:port[/path]`. */
  url: URL;
  /** Name checked against the server certificate (default: the URL's host). */
  serverName?: string;
  /** Where trust comes from. */
  trust: TrustSource;
  /** Client certificate to present (mTLS), PEM. */
  clientCertificate?: { cert: string; key: string };
  /** Give up after this long (default 5 s). */
  timeoutMs?: number;
}

/** Result of one request. */
export type RequestResult =
  | { ok: true; status: number; info: CertificateInfo; body: string }
  | { ok: false; error: string };

function describe(error: unknown): string {
  const e = error as Error & { code?: string };
  return e.code && !e.message.includes(e.code) ? `${e.message} (${e.code})` : e.message;
}

/**
 * Makes one request on a new connection and reads the server's certificate.
 *
 * @param options URL, trust and optional client certificate
 */
export async function requestOnce(options: RequestOptions): Promise<RequestResult> {
  let ca: string;
  try {
    ca = (await options.trust.get()).pem;
  } catch (error) {
    return { ok: false, error: describe(error) };
  }
  const url = options.url;
  return await new Promise<RequestResult>((resolve) => {
    let info: CertificateInfo | undefined;
    const req = https.request({
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port || 443,
      path: `${url.pathname}${url.search}`,
      method: "GET",
      servername: options.serverName ?? url.hostname,
      ca,
      agent: false,
      headers: { connection: "close" },
      timeout: options.timeoutMs ?? 5_000,
      ...(options.clientCertificate ?? {}),
    }, (res) => {
      try {
        const raw = (res.socket as TLSSocket).getPeerCertificate().raw;
        info = certificateInfo(new Uint8Array(raw));
      } catch (error) {
        res.destroy();
        resolve({ ok: false, error: `cannot read the server certificate: ${describe(error)}` });
        return;
      }
      const chunks: Uint8Array[] = [];
      res.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      res.on("error", (error) => resolve({ ok: false, error: describe(error) }));
      res.on("end", () => {
        const body = new TextDecoder().decode(
          chunks.length === 1 ? chunks[0] : new Uint8Array(chunks.flatMap((c) => [...c])),
        );
        if ((res.statusCode ?? 0) >= 400) {
          resolve({ ok: false, error: `HTTP ${res.statusCode}: ${body.trim()}` });
        } else resolve({ ok: true, status: res.statusCode ?? 0, info: info!, body });
      });
    });
    req.on(
      "timeout",
      () => req.destroy(new Error(`no response within ${options.timeoutMs ?? 5_000} ms`)),
    );
    req.on("error", (error) => resolve({ ok: false, error: describe(error) }));
    req.end();
  });
}

/** Options for {@link runClient}. */
export interface ClientOptions {
  /** Server URL. */
  url: URL;
  /** Name checked against the server certificate. */
  serverName?: string;
  /** Trust file: the OS store file or `svid_bundle.pem`. */
  trustFile: string;
  /** spiffe-helper directory of this client's own SVID (presented when present). */
  certDir?: string;
  /** Pause between requests. */
  intervalMs: number;
  /** Requests to make (0 = until stopped). */
  count: number;
  /**
   * Which store the start line names: `true` logs `Using system certificate trust store`,
   * `false` logs `Using SPIRE trust store`; omitted, no start line is logged.
   */
  systemCerts?: boolean;
  /**
   * Where log lines go, one call per line, prefix included (default: stderr, where Go's `log`
   * writes).
   */
  print?: (line: string) => void;
  /** Stops the loop when aborted. */
  signal?: AbortSignal;
}

/** Counters of a run. */
export interface ClientStats {
  /** Successful requests. */
  ok: number;
  /** Failed requests. */
  failed: number;
  /** Distinct server NotAfter values seen, in order. */
  notAfters: string[];
}

/**
 * Requests in a loop, logging `Making request #N` and then the certificate report or one
 * failure line per request, every line with Go's `log` prefix ({@link goLogPrefix}).
 *
 * @param options URL, trust, interval and count
 */
export async function runClient(options: ClientOptions): Promise<ClientStats> {
  const print = options.print ?? ((line: string) => console.error(line));
  // Go's log.Printf: the time is taken for every line.
  const log = (message: string) => print(`${goLogPrefix(new Date())}${message}`);
  if (options.systemCerts !== undefined) {
    log(options.systemCerts ? "Using system certificate trust store" : "Using SPIRE trust store");
  }
  const trust = new TrustSource(options.trustFile);
  const stats: ClientStats = { ok: 0, failed: 0, notAfters: [] };
  let own: SvidWatcher | undefined;
  if (options.certDir) own = new SvidWatcher(options.certDir, { retryMs: 1000 });
  try {
    // Present the client's SVID from the first request on when there is one.
    await own?.ready(2_000).catch(() => undefined);
    for (let i = 0; options.count === 0 || i < options.count; i++) {
      if (options.signal?.aborted) break;
      const started = Date.now();
      log(`Making request #${i + 1}`);
      const set = own?.current();
      const result = await requestOnce({
        url: options.url,
        serverName: options.serverName,
        trust,
        clientCertificate: set ? { cert: set.certPem, key: set.keyPem } : undefined,
      });
      if (result.ok) {
        stats.ok++;
        const notAfter = result.info.notAfter.toISOString();
        if (stats.notAfters.at(-1) !== notAfter) stats.notAfters.push(notAfter);
        for (const line of certificateInfoLines(result.info)) log(line);
      } else {
        stats.failed++;
        log(`Request to ${options.url.href} failed: ${result.error}`);
      }
      if (options.count !== 0 && i + 1 >= options.count) break;
      const wait = Math.max(0, options.intervalMs - (Date.now() - started));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        options.signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), {
          once: true,
        });
      });
    }
  } finally {
    own?.close();
  }
  return stats;
}

/**
 * Turns `--server-address` into a URL: `https://host:port`, or `host:port` (https assumed).
 *
 * @param value the flag value
 * @throws {RangeError} for anything that is not an https URL or host:port
 */
export function parseServerAddress(value: string): URL {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `https://${value}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new RangeError(`--server-address: ${JSON.stringify(value)} is not a URL or host:port`);
  }
  if (url.protocol !== "https:") {
    throw new RangeError(`--server-address: only https is supported, got ${url.protocol}`);
  }
  return url;
}

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
