/**
 * `/healthz` and Prometheus `/metrics` on the `--health-addr`.
 *
 * @module
 */

import type { Registry } from "../prometheus/mod.ts";

/** A running health/metrics server. */
export interface HealthServer {
  /** The bound port. */
  port: number;
  /** Stops the server. */
  stop(): Promise<void>;
}

/** Parses `host:port` or `:port` (all interfaces). */
export function parseHostPort(addr: string): { hostname: string; port: number } {
  const i = addr.lastIndexOf(":");
  if (i < 0) throw new Error(`--health-addr "${addr}" must be host:port or :port`);
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--health-addr "${addr}": bad port`);
  }
  const host = addr.slice(0, i).replace(/^\[|\]$/g, "");
  return { hostname: host || "0.0.0.0", port };
}

/**
 * Serves `/healthz` (200 `ok` while `healthy()` is true, else 503) and `/metrics`.
 */
export function startHealthServer(
  addr: string,
  metrics: Registry,
  healthy: () => boolean,
): HealthServer {
  const { hostname, port } = parseHostPort(addr);
  const server = Deno.serve({ hostname, port, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") {
      return healthy() ? new Response("ok\n") : new Response("not ready\n", { status: 503 });
    }
    if (path === "/metrics") {
      return new Response(metrics.render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    return new Response("not found\n", { status: 404 });
  });
  return { port: server.addr.port, stop: () => server.shutdown() };
}
