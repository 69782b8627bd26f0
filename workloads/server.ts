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

import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { parseArgs } from "node:util";
import {
  authorizePeer,
  parseSpiffeId,
  type PeerPolicy,
  ServerCertificateSource,
  UnauthorizedPeerError,
} from "../spire/mod.ts";
import { log } from "./log.ts";

/** Version printed by `--version`. */
export const VERSION = "0.1.0";

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
