/**
 * The CSI gRPC server on a unix socket: Identity and Node services backed by a
 * {@link NodeDriver}-like handler object.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { dirname } from "node:path";
import { CsiError } from "./errors.ts";
import type { Logger } from "../cli/mod.ts";
import { controllerService, identityService, nodeService } from "./proto.ts";
import type {
  NodeGetVolumeStatsRequest,
  NodePublishVolumeRequest,
  NodeUnpublishVolumeRequest,
} from "./proto.ts";

/** What the Node service delegates to (a `NodeDriver`). */
export interface NodeHandler {
  /** NodePublishVolume. */
  publish(req: NodePublishVolumeRequest): Promise<void>;
  /** NodeUnpublishVolume. */
  unpublish(req: NodeUnpublishVolumeRequest): Promise<void>;
  /** NodeGetVolumeStats. */
  stats(req: NodeGetVolumeStatsRequest): Promise<object>;
}

/** Options for {@link startCsiServer}. */
export interface CsiServerOptions {
  /** `unix:///path/csi.sock` or a plain absolute path. */
  endpoint: string;
  /** Driver name. */
  driverName: string;
  /** Vendor version. */
  version: string;
  /** Node id. */
  nodeId: string;
  /** Node calls; when absent only Identity calls and Node capability/info are served. */
  node?: NodeHandler;
  /** Structured logger. */
  logger: Logger;
  /** Whether Probe reports ready (default: always). */
  ready?: () => boolean;
}

/** A running CSI server. */
export interface CsiServer {
  /** The socket path. */
  socketPath: string;
  /** Stops accepting calls, waits briefly for running ones, removes the socket. */
  stop(): Promise<void>;
}

/** The socket path of a `unix://` endpoint. */
export function socketPathOf(endpoint: string): string {
  if (endpoint.startsWith("unix://")) return endpoint.slice("unix://".length);
  if (endpoint.startsWith("/")) return endpoint;
  throw new Error(`endpoint "${endpoint}" must be unix:///absolute/path or an absolute path`);
}

type Unary = (
  call: grpc.ServerUnaryCall<unknown, unknown>,
  cb: grpc.sendUnaryData<unknown>,
) => void;

function unary<Req>(
  logger: Logger,
  name: string,
  fn: (req: Req) => Promise<unknown> | unknown,
): Unary {
  return (call, callback) => {
    const started = performance.now();
    Promise.resolve().then(() => fn(call.request as Req)).then(
      (res) => callback(null, res ?? {}),
      (error) => {
        const code = error instanceof CsiError ? error.code : grpc.status.INTERNAL;
        const message = error instanceof Error ? error.message : String(error);
        logger.warn("call failed", {
          method: name,
          code: grpc.status[code],
          error: message,
          ms: Math.round(performance.now() - started),
        });
        callback({ code, details: message, metadata: new grpc.Metadata() }, null);
      },
    );
  };
}

/** Starts the CSI server; removes a stale socket first and creates the socket's directory. */
export async function startCsiServer(options: CsiServerOptions): Promise<CsiServer> {
  const socketPath = socketPathOf(options.endpoint);
  await Deno.mkdir(dirname(socketPath), { recursive: true });
  await Deno.remove(socketPath).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  const log = options.logger;
  const server = new grpc.Server();
  server.addService(identityService, {
    GetPluginInfo: unary(log, "GetPluginInfo", () => ({
      name: options.driverName,
      vendorVersion: options.version,
    })),
    GetPluginCapabilities: unary(log, "GetPluginCapabilities", () => ({ capabilities: [] })),
    Probe: unary(log, "Probe", () => ({ ready: { value: options.ready?.() ?? true } })),
  });
  // Lists no capability (UNKNOWN): see controllerService. Nothing else of Controller is served.
  server.addService(controllerService, {
    ControllerGetCapabilities: unary(log, "ControllerGetCapabilities", () => ({
      capabilities: [{ rpc: { type: "UNKNOWN" } }],
    })),
  });
  const node = options.node;
  const unavailable = () => {
    throw new CsiError(grpc.status.UNAVAILABLE, "the driver is starting");
  };
  server.addService(nodeService, {
    NodePublishVolume: unary(
      log,
      "NodePublishVolume",
      (req: NodePublishVolumeRequest) => node ? node.publish(req) : unavailable(),
    ),
    NodeUnpublishVolume: unary(
      log,
      "NodeUnpublishVolume",
      (req: NodeUnpublishVolumeRequest) => node ? node.unpublish(req) : unavailable(),
    ),
    NodeGetVolumeStats: unary(
      log,
      "NodeGetVolumeStats",
      (req: NodeGetVolumeStatsRequest) => node ? node.stats(req) : unavailable(),
    ),
    NodeGetCapabilities: unary(log, "NodeGetCapabilities", () => ({
      capabilities: [
        { rpc: { type: "GET_VOLUME_STATS" } },
        { rpc: { type: "VOLUME_CONDITION" } },
      ],
    })),
    NodeGetInfo: unary(log, "NodeGetInfo", () => ({
      nodeId: options.nodeId,
      maxVolumesPerNode: 0,
    })),
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(
      `unix://${socketPath}`,
      grpc.ServerCredentials.createInsecure(),
      (error) => error ? reject(error) : resolve(),
    )
  );
  return {
    socketPath,
    stop: async () => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 5_000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await Deno.remove(socketPath).catch(() => {});
    },
  };
}
