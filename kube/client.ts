/**
 * A small Kubernetes API client: JSON requests (get, list, create, merge/JSON/apply patches, the
 * status subresource) and streamed watches, over `node:https` with one keep-alive agent.
 *
 * Written by hand because `@kubernetes/client-node` 1.4.0 costs ~55 MB of idle VmRSS to import
 * (119.4 MB against 64.5 MB for a bare Deno process; its `KubeConfig` alone pulls in all 2,556
 * generated models), and the programs use a dozen calls of it. Against a real kube-apiserver
 * (bench/idle_programs_bench.ts, median of 3, 2-core box) the idle CSI driver went from 143.3 MB
 * to 83.4 MB VmRSS and the webhook with its controllers from 162.1 MB to 105.9 MB; importing
 * `kube/mod.ts` costs 5.7 MB (bench/driver_memory_bench.ts).
 *
 * `node:https` rather than `fetch` with `Deno.createHttpClient`: only it honours
 * `insecure-skip-tls-verify` (`rejectUnauthorized: false`), and although importing it costs
 * 2.4 MB in a bare process (`Deno.createHttpClient`: 0.5 MB), next to `@grpc/grpc-js`, which the
 * driver loads, it adds 0.2 MB (median of 3 idle processes); the webhook's HTTPS server loads it
 * anyway.
 *
 * A token file (the in-cluster service account's bound token) is re-read once a minute, as
 * client-go does, so a rotated token is used before the old one expires.
 *
 * @module
 */

import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { IncomingMessage } from "node:http";
import { Buffer } from "node:buffer";
import { KubeApiError, KubeRequestError } from "./api_error.ts";
import type { KubeConfig } from "./config.ts";

/** How often a token file is re-read (ms). */
export const TOKEN_REREAD_MS = 60_000;
/** Default timeout of a request other than a watch (ms). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** Query parameters of a list or watch. */
export interface ListOptions {
  /** E.g. `metadata.name=spire-bundle`. */
  fieldSelector?: string;
  /** E.g. `team=a`. */
  labelSelector?: string;
  /** Where a list or watch starts. */
  resourceVersion?: string;
}

/** Query parameters of one page of a list. */
export interface ListPageOptions extends ListOptions {
  /** Most objects in the page (the server may return fewer). */
  limit?: number;
  /** The `metadata.continue` token of the previous page. */
  continue?: string;
}

/** Options of a watch. */
export interface WatchOptions extends ListOptions {
  /** Ask for BOOKMARK events (default true). */
  allowWatchBookmarks?: boolean;
  /** Server-side timeout in seconds (default 300). */
  timeoutSeconds?: number;
  /** Ends the watch. */
  signal?: AbortSignal;
}

/** The type of a watch event. */
export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

/** One event of a watch: for `ERROR` the object is a Status. */
export type WatchHandler = (type: WatchEventType, object: Record<string, unknown>) => void;

/** How a patch body is read. */
export type PatchType = "merge" | "json" | "apply";

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
  apply: "application/apply-patch+yaml",
};

/** Options of a patch. */
export interface PatchOptions {
  /** The field manager (required by apply). */
  fieldManager?: string;
  /** Take over conflicting fields (apply only). */
  force?: boolean;
}

/** A group/version/resource path, namespaced or not. */
export interface ResourceRef {
  /** API group; `""` for the core group. */
  group: string;
  /** Version, e.g. `v1`. */
  version: string;
  /** Resource, e.g. `secrets`. */
  plural: string;
  /** Namespace of a namespaced resource. */
  namespace?: string;
  /** Object name. */
  name?: string;
  /** Subresource, e.g. `status`. */
  subresource?: string;
}

/** The URL path of a resource, e.g. `/api/v1/namespaces/spire/configmaps/spire-bundle`. */
export function resourcePath(ref: ResourceRef): string {
  const enc = encodeURIComponent;
  let path = ref.group === "" ? `/api/${ref.version}` : `/apis/${ref.group}/${ref.version}`;
  if (ref.namespace !== undefined) path += `/namespaces/${enc(ref.namespace)}`;
  path += `/${ref.plural}`;
  if (ref.name !== undefined) path += `/${enc(ref.name)}`;
  if (ref.subresource !== undefined) path += `/${ref.subresource}`;
  return path;
}

/** A Kubernetes object as JSON. */
export type KubeObject = Record<string, unknown>;

/** A list answer. */
export interface KubeList<T = KubeObject> {
  /**
   * Its resourceVersion, where a watch resumes; `continue`: the token of the next page, when a
   * paged list has more.
   */
  metadata?: { resourceVersion?: string; continue?: string };
  /** The objects. */
  items: T[];
}

interface RequestSpec {
  method: string;
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: string;
  contentType?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Options of {@link KubeClient}. */
export interface KubeClientOptions {
  /** Timeout of each request other than a watch (ms, default 30 000). */
  requestTimeoutMs?: number;
  /** Clock for the token file's re-read (default `Date.now`). */
  now?: () => number;
}

/** The error of a request ended by its signal: a `DOMException` named `AbortError`. */
function abortError(what: string, cause: unknown): Error {
  const error = new DOMException(`${what}: aborted`, "AbortError");
  Object.defineProperty(error, "cause", { value: cause });
  return error;
}

/** The client; see the module documentation. */
export class KubeClient {
  readonly #config: KubeConfig;
  readonly #url: URL;
  readonly #agent: HttpAgent;
  readonly #request: typeof httpsRequest;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  #token: string | undefined;
  #tokenReadAt = -Infinity;

  /**
   * Makes a client; no request is sent until one is asked for.
   *
   * @param config the API server and credentials
   * @param options timeouts and clock
   */
  constructor(config: KubeConfig, options: KubeClientOptions = {}) {
    this.#config = config;
    this.#url = new URL(config.server);
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#now = options.now ?? Date.now;
    this.#token = config.token;
    if (this.#url.protocol === "http:") {
      this.#agent = new HttpAgent({ keepAlive: true });
      this.#request = httpRequest as typeof httpsRequest;
    } else {
      this.#agent = new HttpsAgent({
        keepAlive: true,
        ca: config.caPem,
        cert: config.certPem,
        key: config.keyPem,
        rejectUnauthorized: !config.insecureSkipTlsVerify,
      });
      this.#request = httpsRequest;
    }
  }

  /** The settings the client was made from. */
  get config(): KubeConfig {
    return this.#config;
  }

  async #headers(contentType: string | undefined): Promise<Record<string, string | string[]>> {
    const headers: Record<string, string | string[]> = { accept: "application/json" };
    if (contentType !== undefined) headers["content-type"] = contentType;
    const file = this.#config.tokenFile;
    if (file !== undefined && this.#now() - this.#tokenReadAt >= TOKEN_REREAD_MS) {
      try {
        this.#token = (await Deno.readTextFile(file)).trim();
        this.#tokenReadAt = this.#now();
      } catch (error) {
        // Keep the token read last; a request without any fails with the server's 401.
        if (this.#token === undefined) throw new KubeRequestError(`read ${file}`, error);
      }
    }
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (this.#config.impersonateUser) headers["impersonate-user"] = this.#config.impersonateUser;
    if (this.#config.impersonateGroups?.length) {
      headers["impersonate-group"] = [...this.#config.impersonateGroups];
    }
    return headers;
  }

  #target(spec: RequestSpec): string {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(spec.query ?? {})) {
      if (value !== undefined) query.set(key, String(value));
    }
    const qs = query.toString();
    const base = this.#url.pathname.replace(/\/+$/, "");
    return `${base}${spec.path}${qs === "" ? "" : `?${qs}`}`;
  }

  /** Sends a request and resolves with the response once its headers arrived. */
  async #send(spec: RequestSpec): Promise<IncomingMessage> {
    const what = `${spec.method} ${spec.path}`;
    const headers = await this.#headers(spec.contentType);
    return await new Promise<IncomingMessage>((resolve, reject) => {
      const req = this.#request({
        protocol: this.#url.protocol,
        hostname: this.#url.hostname.replace(/^\[|\]$/g, ""),
        port: this.#url.port || (this.#url.protocol === "http:" ? 80 : 443),
        method: spec.method,
        path: this.#target(spec),
        headers,
        agent: this.#agent,
      }, (res) => {
        response = res;
        // Readers see a destroyed body through their own iterator; this keeps an error on a body
        // nobody reads any more from ending the process.
        res.on("error", () => {});
        resolve(res);
      });
      let response: IncomingMessage | undefined;
      if (spec.timeoutMs !== undefined) {
        req.setTimeout(spec.timeoutMs, () => {
          req.destroy(new Error(`no answer in ${spec.timeoutMs} ms`));
        });
      }
      req.on("error", (error: Error) => {
        reject(spec.signal?.aborted ? abortError(what, error) : new KubeRequestError(what, error));
      });
      // The signal is not handed to node:https: Deno 2.8.3 then destroys the request even after
      // its response ended (a watch stopped on the server's ERROR event, which ends the stream),
      // and that AbortError surfaced uncaught and ended the driver. Here an abort destroys the
      // response while it is still being read, the request before it arrived, and nothing after.
      const signal = spec.signal;
      if (signal) {
        const onAbort = () => {
          const error = abortError(what, signal.reason);
          if (response === undefined) req.destroy(error);
          else if (!response.complete) response.destroy(error);
        };
        if (signal.aborted) onAbort();
        else {
          signal.addEventListener("abort", onAbort, { once: true });
          req.on("close", () => signal.removeEventListener("abort", onAbort));
        }
      }
      req.end(spec.body);
    });
  }

  async #json<T>(spec: RequestSpec): Promise<T> {
    const what = `${spec.method} ${spec.path}`;
    const res = await this.#send({ timeoutMs: this.#timeoutMs, ...spec });
    let text: string;
    try {
      const chunks: Uint8Array[] = [];
      for await (const chunk of res) chunks.push(chunk as Uint8Array);
      text = Buffer.concat(chunks).toString("utf8");
    } catch (error) {
      throw new KubeRequestError(what, error);
    }
    const code = res.statusCode ?? 0;
    if (code < 200 || code > 299) throw new KubeApiError(what, code, text);
    try {
      return (text === "" ? {} : JSON.parse(text)) as T;
    } catch (error) {
      throw new KubeRequestError(what, error);
    }
  }

  /**
   * Reads one object.
   *
   * @throws {KubeApiError} on a refusal (404 when it does not exist)
   * @throws {KubeRequestError} when no answer came
   */
  get<T = KubeObject>(path: string): Promise<T> {
    return this.#json<T>({ method: "GET", path });
  }

  /**
   * Lists a collection.
   *
   * @throws {KubeApiError} on a refusal
   * @throws {KubeRequestError} when no answer came
   */
  list<T = KubeObject>(path: string, options: ListPageOptions = {}): Promise<KubeList<T>> {
    return this.#json<KubeList<T>>({ method: "GET", path, query: { ...options } });
  }

  /**
   * Creates an object in a collection.
   *
   * @throws {KubeApiError} on a refusal (409 when it exists)
   * @throws {KubeRequestError} when no answer came
   */
  create<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.#json<T>({
      method: "POST",
      path,
      body: JSON.stringify(body),
      contentType: "application/json",
    });
  }

  /**
   * Patches an object: a merge patch, a JSON patch, or a server-side apply (`apply`, whose
   * `fieldManager` is required; a conflict without `force` is a 409).
   *
   * @throws {KubeApiError} on a refusal
   * @throws {KubeRequestError} when no answer came
   */
  patch<T = KubeObject>(
    path: string,
    type: PatchType,
    body: unknown,
    options: PatchOptions = {},
  ): Promise<T> {
    return this.#json<T>({
      method: "PATCH",
      path,
      query: {
        fieldManager: options.fieldManager,
        force: type === "apply" && options.force !== undefined ? options.force : undefined,
      },
      body: JSON.stringify(body),
      contentType: PATCH_CONTENT_TYPES[type],
    });
  }

  /**
   * Server-side applies `object` at `path` (the object's own URL).
   *
   * @throws {KubeApiError} on a refusal (409: a field another manager owns, without `force`)
   * @throws {KubeRequestError} when no answer came
   */
  apply<T = KubeObject>(
    path: string,
    object: unknown,
    options: { fieldManager: string; force: boolean },
  ): Promise<T> {
    return this.patch<T>(path, "apply", object, options);
  }

  /**
   * Watches a collection: calls `handler` for each event until the server ends the stream
   * (its timeout), the signal aborts, or the connection fails. An `ERROR` event (e.g. 410 Gone:
   * the resourceVersion is too old) is handed on; the caller lists again.
   *
   * @returns once the stream ended
   * @throws {KubeApiError} when the watch is refused
   * @throws {KubeRequestError} when the connection failed
   * @throws an `AbortError` when the signal aborted
   */
  async watch(path: string, options: WatchOptions, handler: WatchHandler): Promise<void> {
    const what = `GET ${path} (watch)`;
    const timeoutSeconds = options.timeoutSeconds ?? 300;
    const res = await this.#send({
      method: "GET",
      path,
      query: {
        watch: true,
        fieldSelector: options.fieldSelector,
        labelSelector: options.labelSelector,
        resourceVersion: options.resourceVersion,
        allowWatchBookmarks: options.allowWatchBookmarks ?? true,
        timeoutSeconds,
      },
      // A silent connection past the server's own timeout is dead.
      timeoutMs: (timeoutSeconds + 30) * 1000,
      signal: options.signal,
    });
    const code = res.statusCode ?? 0;
    if (code < 200 || code > 299) {
      const chunks: Uint8Array[] = [];
      try {
        for await (const chunk of res) chunks.push(chunk as Uint8Array);
      } catch {
        // The status code is the answer.
      }
      throw new KubeApiError(what, code, Buffer.concat(chunks).toString("utf8"));
    }
    const decoder = new TextDecoder();
    let pending = "";
    const dispatch = (line: string) => {
      if (line.trim() === "") return;
      let event: { type?: unknown; object?: unknown };
      try {
        event = JSON.parse(line);
      } catch (error) {
        throw new KubeRequestError(what, error);
      }
      if (typeof event.type === "string" && typeof event.object === "object" && event.object) {
        handler(event.type as WatchEventType, event.object as KubeObject);
      }
    };
    try {
      for await (const chunk of res) {
        pending += decoder.decode(chunk as Uint8Array, { stream: true });
        let newline: number;
        while ((newline = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          dispatch(line);
        }
      }
    } catch (error) {
      if (options.signal?.aborted) throw abortError(what, error);
      if (error instanceof KubeRequestError) throw error;
      throw new KubeRequestError(what, error);
    }
    dispatch(pending + decoder.decode());
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.#agent.destroy();
  }
}
