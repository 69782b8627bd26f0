/**
 * The thin shell around the admission app: HTTPS with the SVID from spiffe-helper's files,
 * swapped live with `setSecureContext`, and a plain-HTTP health port with `/healthz`, `/readyz`
 * and `/metrics`.
 *
 * The app runs under `node:https` (not `Deno.serve`) for one reason: `server.setSecureContext()`
 * swaps the SVID for new handshakes without dropping connections. `@hono/node-server`'s
 * `getRequestListener` adapts it; its global `Request`/`Response` override is left off, so the
 * rest of the process (the Kubernetes client's `fetch`) keeps the runtime's own classes.
 *
 * @module
 */

import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import type { Logger } from "../cli/mod.ts";
import { ServerCertificateSource } from "../spire/mod.ts";
import { type AppConfig, createApp, type RefusalEvent } from "./app.ts";
import { quoteValue } from "./quote.ts";
import type { WebhookMetrics } from "./metrics.ts";

/**
 * How long an idle keep-alive connection stays open: longer than the 90 s for which Go's
 * `net/http` (the API server's webhook client) reuses one.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 120_000;

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
}

/** A running webhook server. */
export interface WebhookServer {
  /** The HTTPS port actually bound (once ready). */
  port(): number | undefined;
  /** The health port actually bound. */
  healthPort: number;
  /** Resolves once a good SVID is loaded and HTTPS is listening. */
  ready: Promise<void>;
  /** Stops both servers and the SVID watch. */
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
  let https: HttpsServer | undefined;
  let httpsPort: number | undefined;
  let closed = false;
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

  // The bundle is not offered as `ca`: the apiserver presents no client certificate.
  const source = new ServerCertificateSource(options.certDir, {
    includeBundleAsCa: false,
    onError: (error) => log.debug("SVID files not usable yet", { error: error.message }),
  });
  source.watcher.onUpdate((set, previous) => {
    if (previous !== undefined) metrics.svidUpdated();
    log.info("serving SVID", {
      spiffeId: set.spiffeId ? String(set.spiffeId) : undefined,
      notAfter: set.notAfter.toISOString(),
    });
  });

  const health = createHttpServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const reply = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/healthz") reply(200, "ok\n");
    else if (path === "/readyz") {
      const current = source.watcher.current();
      if (httpsPort !== undefined && current && current.notAfter.getTime() > Date.now()) {
        reply(200, "ok\n");
      } else if (current && httpsPort !== undefined) {
        reply(503, `not ready: serving SVID expired at ${current.notAfter.toISOString()}\n`);
      } else {
        const why = source.watcher.lastError()?.message;
        reply(503, `not ready: no valid SVID in ${options.certDir} yet${why ? ` (${why})` : ""}\n`);
      }
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
    https = createHttpsServer(
      initial,
      getRequestListener(app.fetch, {
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
      }),
    );
    // Go's net/http, the API server's webhook client, reuses an idle connection for up to 90 s
    // and does not retry a POST that meets a connection the server has just closed: under
    // failurePolicy Fail that is a rejected pod. node:https closes idle connections after 5 s.
    https.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    https.on(
      "tlsClientError",
      (error: Error) => log.debug("TLS handshake failed", { error: error.message }),
    );
    source.attach(https);
    httpsPort = await listen(https, options.port, host);
    log.info("admission endpoint listening", { port: httpsPort });
  })();
  ready.catch((error) => {
    if (!closed) log.error("cannot serve HTTPS", { error: String(error) });
  });

  return {
    port: () => httpsPort,
    healthPort,
    ready,
    async close() {
      closed = true;
      source.close();
      const stop = (server: HttpServer | HttpsServer) =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      await Promise.all([stop(health), ...(https ? [stop(https)] : [])]);
    },
  };
}
