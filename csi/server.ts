/**
 * The CSI gRPC server on a unix socket: Identity and Node services backed by a
 * {@link NodeDriver}-like handler object.
 *
 * Stopping drains: grpc-js `tryShutdown` closes the listener and sends GOAWAY, so no new call
 * starts, while every call already running finishes and is answered; only when that takes longer
 * than the caller's bound does `forceShutdown` cancel the rest. A publish normally takes
 * milliseconds (p99 well under 50 ms in bench/publish_bench.ts), but one whose source lookup waits
 * on a slow API server can take seconds, which is why the bound is a flag (`--shutdown-timeout`,
 * default 10 s: a third of the pod's default 30 s termination grace period) rather than a
 * constant.
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

/** How {@link CsiServer.stop} ended. */
export interface CsiServerStopped {
  /** Calls running when the stop began. */
  inFlight: number;
  /** False when the bound passed and the remaining calls were cancelled (`forceShutdown`). */
  drained: boolean;
}

/** Default bound of {@link CsiServer.stop}, in ms. */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** A running CSI server. */
export interface CsiServer {
  /** The socket path. */
  socketPath: string;
  /** Calls running now (started, not yet answered). */
  readonly inFlight: number;
  /**
   * Stops accepting calls and waits up to `timeoutMs` (default
   * {@link DEFAULT_STOP_TIMEOUT_MS}) for the running ones to be answered, then cancels what is
   * left; removes the socket.
   */
  stop(timeoutMs?: number): Promise<CsiServerStopped>;
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

/** Counts the calls between their start and their answer. */
interface CallCounter {
  running: number;
}

function unary<Req>(
  logger: Logger,
  name: string,
  fn: (req: Req) => Promise<unknown> | unknown,
  counter: CallCounter,
): Unary {
  return (call, cb) => {
    const started = performance.now();
    counter.running++;
    const callback: grpc.sendUnaryData<unknown> = (error, value) => {
      counter.running--;
      cb(error, value);
    };
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
  const counter: CallCounter = { running: 0 };
  const call = <Req>(name: string, fn: (req: Req) => Promise<unknown> | unknown) =>
    unary(log, name, fn, counter);
  const server = new grpc.Server();
  server.addService(identityService, {
    GetPluginInfo: call("GetPluginInfo", () => ({
      name: options.driverName,
      vendorVersion: options.version,
    })),
    GetPluginCapabilities: call("GetPluginCapabilities", () => ({ capabilities: [] })),
    Probe: call("Probe", () => ({ ready: { value: options.ready?.() ?? true } })),
  });
  // Lists no capability (UNKNOWN): see controllerService. Nothing else of Controller is served.
  server.addService(controllerService, {
    ControllerGetCapabilities: call("ControllerGetCapabilities", () => ({
      capabilities: [{ rpc: { type: "UNKNOWN" } }],
    })),
  });
  const node = options.node;
  const unavailable = () => {
    throw new CsiError(grpc.status.UNAVAILABLE, "the driver is starting");
  };
  server.addService(nodeService, {
    NodePublishVolume: call(
      "NodePublishVolume",
      (req: NodePublishVolumeRequest) => node ? node.publish(req) : unavailable(),
    ),
    NodeUnpublishVolume: call(
      "NodeUnpublishVolume",
      (req: NodeUnpublishVolumeRequest) => node ? node.unpublish(req) : unavailable(),
    ),
    NodeGetVolumeStats: call(
      "NodeGetVolumeStats",
      (req: NodeGetVolumeStatsRequest) => node ? node.stats(req) : unavailable(),
    ),
    NodeGetCapabilities: call("NodeGetCapabilities", () => ({
      capabilities: [
        { rpc: { type: "GET_VOLUME_STATS" } },
        { rpc: { type: "VOLUME_CONDITION" } },
      ],
    })),
    NodeGetInfo: call("NodeGetInfo", () => ({
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
    get inFlight() {
      return counter.running;
    },
    stop: async (timeoutMs = DEFAULT_STOP_TIMEOUT_MS) => {
      const inFlight = counter.running;
      const drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve(false);
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      await Deno.remove(socketPath).catch(() => {});
      return { inFlight, drained };
    },
  };
}
