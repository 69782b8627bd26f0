/**
 * The example HTTPS server as a library: serves its SPIFFE X.509-SVID from spiffe-helper's files
 * and takes each rotated certificate live (`setSecureContext`); optional mTLS authorises clients
 * by SPIFFE ID. `server.ts` is its command line; `self_check.ts` drives it for `--self-test`.
 *
 * @module
 */

import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import {
  authorizePeer,
  type PeerPolicy,
  ServerCertificateSource,
  UnauthorizedPeerError,
} from "../spire/mod.ts";
import { log } from "./log.ts";

/** Options for {@link startServer}. */
export interface ServerOptions {
  /** spiffe-helper's directory. */
  certDir: string;
  /** Port (0 picks a free one). */
  port: number;
  /** Listen address (default `0.0.0.0`). */
  hostname?: string;
  /** Require a client certificate whose SPIFFE ID satisfies this policy (mTLS). */
  requireClient?: PeerPolicy;
  /** How long to wait for the first SVID set (default 60 s). */
  readyTimeoutMs?: number;
  /** Watcher debounce / resync / retry overrides. */
  watcher?: { debounceMs?: number; resyncMs?: number; retryMs?: number };
  /** Log each certificate swap, rejected set and failed handshake (default true). */
  logRotations?: boolean;
}

/** A running server. */
export interface RunningServer {
  /** The bound port. */
  port: number;
  /** The certificate source (its watcher shows the current set). */
  source: ServerCertificateSource;
  /** Stops accepting, closes connections and the watcher. */
  close(): Promise<void>;
}

function handler(requireClient: PeerPolicy | undefined, source: ServerCertificateSource) {
  return (req: IncomingMessage, res: ServerResponse) => {
    let peer = "";
    if (requireClient) {
      const socket = req.socket as TLSSocket;
      const raw = socket.getPeerCertificate?.()?.raw;
      try {
        if (!raw) throw new UnauthorizedPeerError(undefined, JSON.stringify(requireClient));
        peer = authorizePeer(new Uint8Array(raw), requireClient).toString();
      } catch (error) {
        res.writeHead(403, { "content-type": "text/plain" });
        res.end(`forbidden: ${(error as Error).message}\n`);
        return;
      }
    }
    const id = source.watcher.current()?.spiffeId?.toString() ?? "unknown";
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`hello from ${id}${peer ? ` to ${peer}` : ""} (${req.method} ${req.url})\n`);
  };
}

/**
 * Starts the server once the first valid SVID set is available.
 *
 * @param options directory, port and mTLS policy
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const logRotations = options.logRotations ?? true;
  const source = new ServerCertificateSource(options.certDir, {
    ...options.watcher,
    onError: (error) => {
      if (logRotations) {
        log("warn", "SVID set not accepted, keeping the last good one", { error: error.message });
      }
    },
  });
  let initial;
  try {
    initial = await source.initialOptions(options.readyTimeoutMs ?? 60_000);
  } catch (error) {
    source.close();
    throw error;
  }
  const mtls = options.requireClient !== undefined;
  const server = https.createServer(
    { ...initial, requestCert: mtls, rejectUnauthorized: mtls },
    handler(options.requireClient, source),
  );
  server.keepAliveTimeout = 5_000;
  source.watcher.onUpdate((set) => {
    if (logRotations) {
      log("info", "serving new SVID", {
        spiffeId: set.spiffeId?.toString(),
        notAfter: set.notAfter.toISOString(),
      });
    }
  });
  source.attach(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname ?? "0.0.0.0", () => resolve());
  });
  server.on("error", (error) => log("error", "server error", { error: error.message }));
  if (logRotations) {
    server.on(
      "tlsClientError",
      (error) => log("debug", "TLS handshake failed", { error: error.message }),
    );
  }
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    source,
    close: () =>
      new Promise<void>((resolve) => {
        source.close();
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}
