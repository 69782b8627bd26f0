/**
 * The thin shell around the admission app: HTTPS with the SVID from spiffe-helper's files,
 * swapped live with `setSecureContext`, and a plain-HTTP health port with `/healthz`, `/readyz`
 * and `/metrics`.
 *
 * **Shutdown** ({@link WebhookServer.shutdown}) drains instead of dropping: under
 * `failurePolicy: Fail` every admission a rolling update cuts off is a rejected pod. `/readyz`
 * turns 503 first and HTTPS keeps serving for a delay, so the endpoint removal reaches kube-proxy
 * and every API server while this pod still answers; every response from then on carries
 * `Connection: close` and idle keep-alive connections are closed, so clients move to another
 * replica at their next request instead of meeting a dead socket. Then the port stops accepting
 * and in-flight requests finish, bounded by a timeout after which the rest are cut.
 *
 * **Readiness and the certificate**: `/readyz` is 503 from {@link DEFAULT_EXPIRY_MARGIN_MS}
 * (5 min) before the served certificate expires. SPIRE's default X.509-SVID TTL is 1 h (the
 * webhook's ClusterSPIFFEID asks for 60m) and spiffe-helper gets the renewed SVID at half-life,
 * so a healthy replica never has less than about 30 min left; with 5 min left renewals have been
 * failing for 25 min, and the remaining 5 min leave the readiness probe (5 s period) ample time
 * to take the pod out of the Service while other replicas with good certificates keep serving.
 *
 * Reload problems and failed handshakes are reported by {@link SvidReloadReporter} and
 * {@link HandshakeFailureReporter}.
 *
 * The app runs under `node:https` (not `Deno.serve`) for one reason: `server.setSecureContext()`
 * swaps the SVID for new handshakes without dropping connections. `@hono/node-server`'s
 * `getRequestListener` adapts it; its global `Request`/`Response` override is left off, so the
 * rest of the process (the Kubernetes client's `fetch`) keeps the runtime's own classes.
 *
 * @module
 */

import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import type { Logger } from "../cli/mod.ts";
import { ServerCertificateSource } from "../spire/mod.ts";
import { type AppConfig, createApp, type RefusalEvent } from "./app.ts";
import { quoteValue } from "./quote.ts";
import type { WebhookMetrics } from "./metrics.ts";
import { HandshakeFailureReporter } from "./handshake_failures.ts";
import { SvidReloadReporter } from "./svid_reload_reporter.ts";

/**
 * How long an idle keep-alive connection stays open: longer than the 90 s for which Go's
 * `net/http` (the API server's webhook client) reuses one.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 120_000;

/** `/readyz` fails this long before the served certificate expires (ms; see the module doc). */
export const DEFAULT_EXPIRY_MARGIN_MS = 5 * 60_000;

/**
 * Default drain delay (ms): how long HTTPS keeps serving after `/readyz` turned 503. The
 * EndpointSlice controller drops a terminating pod at once and kube-proxy and the API servers'
 * endpoint watches see it within about a second; 5 s covers that several times over.
 */
export const DEFAULT_SHUTDOWN_DELAY_MS = 5_000;

/**
 * Default bound (ms) on in-flight requests once the port stopped accepting: twice the 5 s
 * `timeoutSeconds` of the MutatingWebhookConfiguration (the API server's own default is 10 s),
 * so no request the API server still waits for is cut.
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

/** Options of {@link WebhookServer.shutdown}. */
export interface ShutdownOptions {
  /** How long to keep serving with `/readyz` failing (ms, default 5 s; 0: no delay). */
  delayMs?: number;
  /** How long in-flight requests may take once the port stopped accepting (ms, default 10 s). */
  timeoutMs?: number;
}

/** What {@link WebhookServer.shutdown} did. */
export interface ShutdownResult {
  /** Requests answered between the start of the shutdown and its end. */
  served: number;
  /** Requests still in flight at the timeout; their connections were closed without waiting. */
  cut: number;
}

/** Options of {@link startWebhookServer}. */
export interface WebhookServerOptions {
  /** spiffe-helper's directory (`svid.pem`, `svid_key.pem`, `svid_bundle.pem`). */
  certDir: string;
  /** HTTPS port (0 picks a free one). */
  port: number;
  /** Health/metrics port (0 picks a free one). */
  healthPort: number;
  /** Address both servers bind to (default `0.0.0.0`). */
  host?: string;
  /** Mutation settings. */
  app: Omit<AppConfig, "onAdmission" | "onRefused">;
  /** Where logs go. */
  log: Logger;
  /** Where counts go. */
  metrics: WebhookMetrics;
  /**
   * `/readyz` fails this long before the served certificate expires (ms, default 5 min; at most a
   * quarter of the certificate's lifetime).
   */
  expiryMarginMs?: number;
  /** At most one summary of failed TLS handshakes per this many ms (default 60 s). */
  handshakeLogIntervalMs?: number;
}

/** A running webhook server. */
export interface WebhookServer {
  /** The HTTPS port actually bound (once ready). */
  port(): number | undefined;
  /** The health port actually bound. */
  healthPort: number;
  /** Resolves once a good SVID is loaded and HTTPS is listening. */
  ready: Promise<void>;
  /**
   * Drains and stops: `/readyz` 503 and `Connection: close` at once, HTTPS serving on for
   * `delayMs`, then no new connections and in-flight requests finishing within `timeoutMs`, then
   * both servers and the SVID watch stopped. Calling it again returns the same promise.
   */
  shutdown(options?: ShutdownOptions): Promise<ShutdownResult>;
  /** Stops both servers and the SVID watch now, cutting open connections. */
  close(): Promise<void>;
}

function listen(server: HttpServer | HttpsServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Starts the health port at once and the HTTPS port as soon as spiffe-helper's files hold a
 * consistent, verified SVID set; `/readyz` answers 503 until then.
 */
export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const { log, metrics } = options;
  const host = options.host ?? "0.0.0.0";
  const marginMs = options.expiryMarginMs ?? DEFAULT_EXPIRY_MARGIN_MS;
  let https: HttpsServer | undefined;
  let httpsPort: number | undefined;
  let closed = false;
  // Set once a shutdown starts: readiness fails and every response closes its connection.
  let draining = false;
  let servedWhileDraining = 0;
  // Responses not yet finished, so a shutdown can mark the ones whose headers are not sent.
  const open = new Set<ServerResponse>();
  // Every 4xx once: counted by reason and logged with status, method and path, no body contents.
  const refused = (event: RefusalEvent) => {
    metrics.refused(event.reason);
    const fields = { ...event, path: quoteValue(event.path) };
    if (event.status === 404) log.info("request refused", fields);
    else log.warn("request refused", fields);
  };

  const app = createApp({
    ...options.app,
    onAdmission: (event) => {
      metrics.observe(event);
      const fields = { ...event, ms: Math.round(event.seconds * 1e5) / 100, seconds: undefined };
      if (event.result === "error") log.error("admission failed", fields);
      else if (event.result === "rejected") log.warn("admission refused", fields);
      // A bad request is logged once, by onRefused, without its message (it may quote the body).
      else if (event.result !== "bad_request") log.debug("admission", fields);
    },
    onRefused: (event) => refused(event),
  });

  const reloads = new SvidReloadReporter({ log, count: () => metrics.svidReloadFailed() });
  const handshakes = new HandshakeFailureReporter({
    log,
    count: (reason) => metrics.tlsHandshakeFailed(reason),
    intervalMs: options.handshakeLogIntervalMs,
  });
  // The bundle is not offered as `ca`: the apiserver presents no client certificate.
  const source: ServerCertificateSource = new ServerCertificateSource(options.certDir, {
    includeBundleAsCa: false,
    onError: (error) => reloads.failed(error, source.watcher.current() !== undefined),
    onRecovered: () => reloads.recovered(),
  });
  source.watcher.onUpdate((set, previous) => {
    if (previous !== undefined) metrics.svidUpdated();
    const served = source.served() ?? set;
    metrics.svidServed(served.notAfter);
    log.info("serving SVID", {
      spiffeId: set.spiffeId ? String(set.spiffeId) : undefined,
      notAfter: set.notAfter.toISOString(),
    });
  });

  const readiness = (): { ok: boolean; text: string } => {
    if (draining) return { ok: false, text: "not ready: shutting down\n" };
    const current = source.served() ?? source.watcher.current();
    if (httpsPort === undefined || !current) {
      const why = source.watcher.lastError()?.message;
      return {
        ok: false,
        text: `not ready: no valid SVID in ${options.certDir} yet${why ? ` (${why})` : ""}\n`,
      };
    }
    const left = current.notAfter.getTime() - Date.now();
    if (left <= 0) {
      return {
        ok: false,
        text: `not ready: serving SVID expired at ${current.notAfter.toISOString()}\n`,
      };
    }
    // A short-lived SVID (SPIRE allows seconds) would never be ready under a fixed margin: the
    // margin is at most a quarter of the SVID's lifetime, half of what spiffe-helper leaves it
    // when it renews at half-life.
    const lifetime = current.notAfter.getTime() - current.notBefore.getTime();
    const effectiveMarginMs = Math.min(marginMs, lifetime / 4);
    if (left <= effectiveMarginMs) {
      const why = source.watcher.lastError()?.message;
      return {
        ok: false,
        text: `not ready: serving SVID expires at ${current.notAfter.toISOString()}, within the ` +
          `${Math.round(effectiveMarginMs / 1000)} s margin, and no renewed one was read${
            why ? ` (${why})` : ""
          }\n`,
      };
    }
    return { ok: true, text: "ok\n" };
  };

  const health = createHttpServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const reply = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/healthz") reply(200, "ok\n");
    else if (path === "/readyz") {
      const { ok, text } = readiness();
      reply(ok ? 200 : 503, text);
    } else if (path === "/metrics") {
      reply(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
    } else reply(404, "not found\n");
  });
  const healthPort = await listen(health, options.healthPort, host);
  log.info("health endpoint listening", { port: healthPort });

  const ready = (async () => {
    // The webhook's own ClusterSPIFFEID may not exist yet (its controller creates it): the health
    // port answers meanwhile and HTTPS starts with the first good set.
    if ((await source.watcher.refresh()) === undefined && !closed) {
      log.info(`waiting for SVID in ${options.certDir}`, {
        dir: options.certDir,
        reason: source.watcher.lastError()?.message,
      });
    }
    const initial = await source.initialOptions();
    if (closed) return;
    const listener = getRequestListener(app.fetch, {
      // HTTP/1.1 clients send Host; one that does not still reaches the app.
      hostname: "localhost",
      overrideGlobalObjects: false,
      // A request the adapter cannot build (e.g. a malformed Host header) is a 400, as it is
      // without an errorHandler; anything else here is a bug (the app's onError answers every
      // error it sees).
      errorHandler: (error) => {
        if (error instanceof Error && error.name === "RequestError") {
          refused({ status: 400, reason: "invalid_http", method: "", path: "" });
          return Response.json({ error: `bad request: ${error.message}` }, { status: 400 });
        }
        log.error("request failed", { error: String(error) });
        const message = `internal error: ${error instanceof Error ? error.message : error}`;
        return Response.json({ error: message }, { status: 500 });
      },
    });
    https = createHttpsServer(initial, (req: IncomingMessage, res: ServerResponse) => {
      if (draining) res.setHeader("connection", "close");
      open.add(res);
      res.once("finish", () => draining && servedWhileDraining++);
      res.once("close", () => open.delete(res));
      return listener(req, res);
    });
    // Go's net/http, the API server's webhook client, reuses an idle connection for up to 90 s
    // and does not retry a POST that meets a connection the server has just closed: under
    // failurePolicy Fail that is a rejected pod. node:https closes idle connections after 5 s.
    https.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    https.on("tlsClientError", (error: Error) => handshakes.report(error));
    source.attach(https);
    const served = source.served();
    if (served) metrics.svidServed(served.notAfter);
    httpsPort = await listen(https, options.port, host);
    log.info("admission endpoint listening", { port: httpsPort });
  })();
  ready.catch((error) => {
    if (!closed) log.error("cannot serve HTTPS", { error: String(error) });
  });

  // Resolves once the server is closed and (with `force`) its connections are cut; a server
  // already closed resolves at once (its close callback would never run again).
  const stopServer = (server: HttpServer | HttpsServer, force: boolean) =>
    new Promise<void>((resolve) => {
      if (server.listening) server.close(() => resolve());
      else resolve();
      if (force) server.closeAllConnections();
    });
  const stopWatching = () => {
    closed = true;
    source.close();
    handshakes.close();
  };

  let shutdown: Promise<ShutdownResult> | undefined;
  const drain = async (delayMs: number, timeoutMs: number): Promise<ShutdownResult> => {
    draining = true;
    // Responses already under way close their connection too, unless their headers are out.
    for (const res of open) if (!res.headersSent) res.setHeader("connection", "close");
    https?.closeIdleConnections();
    // Never served: no endpoint points here, so there is nothing to wait for (and HTTPS must not
    // start now).
    const serving = https !== undefined;
    if (!serving) closed = true;
    log.info("shutting down: not ready, still serving", {
      delayMs: serving ? delayMs : 0,
      timeoutMs,
    });
    if (delayMs > 0 && serving) await new Promise((resolve) => setTimeout(resolve, delayMs));
    let cut = 0;
    const server = https;
    if (server) {
      const inFlight = open.size;
      log.info("shutting down: no new connections, finishing requests", { inFlight });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = await Promise.race([
        stopServer(server, false).then(() => true),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), timeoutMs)),
      ]);
      clearTimeout(timer);
      server.closeIdleConnections();
      if (!done) {
        cut = open.size;
        log.warn("shutdown timeout: closing connections still in use", { cut, timeoutMs });
        server.closeAllConnections();
      }
    }
    stopWatching();
    await stopServer(health, true);
    const result = { served: servedWhileDraining, cut };
    log.info("shut down", result);
    return result;
  };

  return {
    port: () => httpsPort,
    healthPort,
    ready,
    shutdown(shutdownOptions: ShutdownOptions = {}) {
      shutdown ??= drain(
        shutdownOptions.delayMs ?? DEFAULT_SHUTDOWN_DELAY_MS,
        shutdownOptions.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
      );
      return shutdown;
    },
    async close() {
      draining = true;
      stopWatching();
      // A shutdown under way sees its connections cut and finishes at once.
      await Promise.all([stopServer(health, true), ...(https ? [stopServer(https, true)] : [])]);
    },
  };
}
