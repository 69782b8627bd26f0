/**
 * Runs a `fetch(Request) -> Response` handler inside `node:http`/`node:https`.
 *
 * Written here rather than taken from `@hono/node-server` because that package is not among the
 * project's dependencies, and the webhook needs `node:https` (not `Deno.serve`) for one reason:
 * `server.setSecureContext()` swaps the SVID for new handshakes without dropping connections.
 * The adapter buffers the request body up to a limit (an AdmissionReview is one JSON document)
 * and answers 413 itself beyond it, so an oversized body is never held in memory.
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from "node:http";

/** A web-standard request handler, such as a Hono app's `fetch`. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Options of {@link toNodeListener}. */
export interface NodeListenerOptions {
  /** Largest body read; beyond it the client gets 413 (default 3 MiB). */
  maxBodyBytes?: number;
  /** Called when the handler throws or the response cannot be written. */
  onError?: (error: unknown) => void;
}

function send(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: message });
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array | "too large"> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Uint8Array) => {
      if (over) return;
      size += chunk.byteLength;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        resolve("too large");
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (over) return;
      const bytes = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.byteLength;
      }
      resolve(bytes);
    });
    req.on("error", reject);
  });
}

/**
 * Wraps a fetch handler as a `node:http(s)` request listener.
 *
 * ```ts
 * import { createServer } from "node:http";
 * createServer(toNodeListener((req) => new Response("ok"))).listen(8080);
 * ```
 */
export function toNodeListener(
  handler: FetchHandler,
  options: NodeListenerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const limit = options.maxBodyBytes ?? 3 * 1024 * 1024;
  const onError = options.onError ?? (() => {});
  return (req, res) => {
    (async () => {
      const declared = Number(req.headers["content-length"] ?? "0");
      if (declared > limit) {
        // Close the connection rather than read a body we will not use.
        res.setHeader("connection", "close");
        send(res, 413, `body of ${declared} bytes exceeds ${limit} bytes`);
        return;
      }
      const method = req.method ?? "GET";
      const hasBody = method !== "GET" && method !== "HEAD";
      const body = hasBody ? await readBody(req, limit) : undefined;
      if (body === "too large") {
        res.setHeader("connection", "close");
        send(res, 413, `body exceeds ${limit} bytes`);
        return;
      }
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined || name.startsWith(":")) continue;
        if (Array.isArray(value)) { for (const v of value) headers.append(name, v); }
        else headers.set(name, value);
      }
      const host = req.headers.host ?? "localhost";
      const request = new Request(new URL(req.url ?? "/", `https://${host}`), {
        method,
        headers,
        body: body as Uint8Array<ArrayBuffer> | undefined,
      });
      const response = await handler(request);
      const out: Record<string, string | string[]> = {};
      response.headers.forEach((value, name) => {
        if (name === "set-cookie") return;
        out[name] = value;
      });
      const cookies = response.headers.getSetCookie();
      if (cookies.length > 0) out["set-cookie"] = cookies;
      const bytes = new Uint8Array(await response.arrayBuffer());
      out["content-length"] = String(bytes.byteLength);
      res.writeHead(response.status, out);
      res.end(bytes);
    })().catch((error) => {
      onError(error);
      send(res, 500, `internal error: ${error instanceof Error ? error.message : String(error)}`);
    });
  };
}
