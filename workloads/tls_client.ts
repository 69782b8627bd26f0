/**
 * The example HTTPS client as a library: one request per new TLS connection, logging the
 * server's certificate as the Go client it reimplements does. `client.ts` is its command line;
 * `self_check.ts` drives it for `--self-test`.
 *
 * @module
 */

import https from "node:https";
import type { TLSSocket } from "node:tls";
import { SvidWatcher, TrustSource } from "../spire/mod.ts";
import {
  type CertificateInfo,
  certificateInfo,
  certificateInfoLines,
  goLogPrefix,
} from "./cert_info.ts";

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
