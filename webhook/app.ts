/**
 * The admission endpoint as a Hono app: a pure `fetch(Request) -> Response` built from its
 * configuration, with no module state, so it runs the same under `app.request()`, `Deno.serve` or
 * the `node:https` shell (`@hono/node-server`'s `getRequestListener`).
 *
 * `POST /mutate` reads as parse → filter → plan → respond. Every request that cannot be answered
 * with an AdmissionReview (wrong content type, a body over the limit, not UTF-8, not JSON, not an
 * `admission.k8s.io/v1` AdmissionReview with a request uid) throws an `HTTPException` with the
 * reason as its message (and the underlying error as its `cause`); one `app.onError` turns it into
 * `{"error": reason}` with its 4xx status, reports it as `bad_request` and, like a 404, once to
 * `onRefused` with its {@link RefusalReason}. The body is read in one place, `guardBody`
 * (`body_budget.ts`), which holds every limit on it: a declared `Content-Length` over the size
 * limit is refused (413) before any byte is read, a streamed body once it passes the limit; a body
 * that does not fit the process-wide budget of body bytes in flight is refused at once (429 with
 * `Retry-After`, its body discarded as it arrives), and one not received in full within the body
 * timeout is refused (408). The 413 and 408 close the connection rather than read the rest.
 * Within the limits a declared length takes the whole-body read, about 70 µs cheaper per review
 * than reading the stream chunk by chunk.
 *
 * The budget defaults to 1/32 of the container memory limit (`inFlightBytesFor`: 12 MiB, four
 * 3 MiB reviews, at the manifest's 384Mi; see `body_budget.ts` for the measurement) and the body
 * timeout to 3 s: the apiserver gives the whole call 5 s (`timeoutSeconds: 5`), so a body still
 * arriving after 3 s leaves no time to answer, and it is a stalled or hostile client or a host
 * too loaded to serve it (on a 2-core box at load average 12 a lone 3 MiB upload from a Deno
 * client took 1.4 s; the apiserver's Go client on a cluster network sends it far faster).
 *
 * @module
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { V1Pod } from "@kubernetes/client-node";
import {
  InvalidAnnotationError,
  type MutationConfig,
  planMutation,
  wantsInjection,
} from "./mutate.ts";
import { quoteValue } from "./quote.ts";
import {
  BodyAbortedError,
  BodyTimeoutError,
  BodyTooLargeError,
  BudgetExhaustedError,
  ByteBudget,
  type HeldBody,
  inFlightBytesFor,
  readBody,
} from "./body_budget.ts";
import { MemoryLimitError, readMemoryLimit } from "../cli/memory_limit.ts";

/** Largest AdmissionReview accepted (the apiserver's own request limit is 3 MiB). */
export const DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024;

/** How long a request body may take to arrive in full (the apiserver allows the call 5 s). */
export const DEFAULT_BODY_TIMEOUT_MS = 3_000;

/** Container limit assumed when the process has none: the manifest's 384Mi. */
export const FALLBACK_MEMORY_LIMIT_BYTES = 384 * 1024 * 1024;

/** Seconds a client refused for a full budget is told to wait (`Retry-After`). */
export const RETRY_AFTER_SECONDS = 1;

/** What a review came to, for metrics and logs. */
export type AdmissionResult =
  | "mutated"
  | "unchanged"
  | "skipped"
  | "rejected"
  | "error"
  | "bad_request";

/** One finished `/mutate` call. */
export interface AdmissionEvent {
  /** The outcome. */
  result: AdmissionResult;
  /** Wall time spent in the handler, in seconds. */
  seconds: number;
  /** Request uid when known. */
  uid?: string;
  /** `namespace/name` (or generateName) of the pod when known. */
  pod?: string;
  /** Why, for rejections, errors and bad requests. */
  message?: string;
}

/**
 * Why a request was refused without an AdmissionReview (the `reason` label of
 * `spire_cacerts_webhook_requests_refused_total`): `body_too_large` (413),
 * `unsupported_media_type` (415), `empty_body`, `invalid_utf8`, `invalid_json`,
 * `not_admission_review` (400: not an `admission.k8s.io/v1` AdmissionReview with a request uid),
 * `not_found` (404: another route or method), `busy` (429: the budget of body bytes in flight has no
 * room for this body), `body_timeout` (408: the body did not arrive within the body timeout),
 * `body_aborted` (400: the body stream failed before it was complete; the client is usually gone);
 * `invalid_http` (400: a request the HTTP adapter cannot
 * turn into a `Request`, e.g. a malformed Host header; counted by the server shell).
 */
export type RefusalReason =
  | "invalid_http"
  | "body_too_large"
  | "busy"
  | "body_timeout"
  | "body_aborted"
  | "unsupported_media_type"
  | "empty_body"
  | "invalid_utf8"
  | "invalid_json"
  | "not_admission_review"
  | "not_found";

/** One refused request (a 4xx), reported once per request, without body contents. */
export interface RefusalEvent {
  /** The HTTP status answered. */
  status: number;
  /** Why. */
  reason: RefusalReason;
  /** The request's method. */
  method: string;
  /** The request's path (no query). */
  path: string;
}

/** Configuration of {@link createApp}. */
export interface AppConfig extends MutationConfig {
  /** What a failing webhook answers: `Fail` rejects the pod, `Ignore` admits it unchanged. */
  failurePolicy?: "Fail" | "Ignore";
  /** Body size limit in bytes (default {@link DEFAULT_MAX_BODY_BYTES}). */
  maxBodyBytes?: number;
  /**
   * Request-body bytes in flight across all requests (default: 1/32 of the container memory
   * limit, or of {@link FALLBACK_MEMORY_LIMIT_BYTES} without one, never below `maxBodyBytes`).
   */
  maxInFlightBytes?: number;
  /** Milliseconds a body may take to arrive in full (default {@link DEFAULT_BODY_TIMEOUT_MS}). */
  bodyTimeoutMs?: number;
  /** Called once per `/mutate` call; this is where the shell counts and logs. */
  onAdmission?: (event: AdmissionEvent) => void;
  /** Called once per refused request (every 4xx, `/mutate` or not): counted and logged. */
  onRefused?: (event: RefusalEvent) => void;
  /** The mutation; replaceable so tests can make it throw. Defaults to {@link planMutation}. */
  plan?: typeof planMutation;
}

/**
 * The Hono environment of {@link createApp}: `started` is set when a `/mutate` call begins, `body`
 * once its body has been read within the limits.
 */
export interface AdmissionEnv {
  /** Per-request values. */
  Variables: {
    /** `performance.now()` when the `/mutate` call began. */
    started: number;
    /** The request body, read by `guardBody`. */
    body: Uint8Array;
  };
}

/** The `request` part of an `admission.k8s.io/v1` AdmissionReview, as far as it is read. */
interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  operation?: string;
  namespace?: string;
  name?: string;
  dryRun?: boolean;
  object?: V1Pod;
}

/** A pod CREATE that asks for injection: the only request {@link planAnswer} sees. */
interface PodCreate extends AdmissionRequest {
  object: V1Pod;
}

/** What one review is answered with (the `response` minus its uid) and how it is reported. */
interface Answer {
  result: AdmissionResult;
  response: Record<string, unknown>;
  message?: string;
}

type AppContext = Context<AdmissionEnv>;

/** A 4xx with the reason it is counted under. */
class Refusal extends HTTPException {
  constructor(
    status: 400 | 408 | 413 | 415 | 429,
    readonly reason: RefusalReason,
    message: string,
    cause?: unknown,
  ) {
    super(status, { message, cause });
  }
}

/**
 * Refusals whose connection is closed rather than its body read: over the size limit, too slow,
 * broken. A `busy` (429) body of at most {@link DISCARD_REFUSED_BYTES} is left to the adapter,
 * which reads and discards it (for up to 500 ms) and keeps the connection, which the apiserver
 * reuses; closing at once cut off every one of 12 refused uploads before the client (node's,
 * which does not read while it writes) saw the 429. A larger refused body is closed: discarding
 * fifteen 3 MiB bodies per burst of twenty kept the process busy enough that admitted reviews
 * took 8.7 s and the peak rose to 329 MB, against 2.8 s and 294 MB when they are closed
 * (webhook/mutate_bench.ts, 384Mi memory cgroup).
 */
const UNREAD_BODY: ReadonlySet<RefusalReason> = new Set([
  "body_too_large",
  "body_timeout",
  "body_aborted",
]);

/** Largest refused (429) body the adapter is left to read and discard; a larger one is closed. */
export const DISCARD_REFUSED_BYTES = 64 * 1024;

/** Whether a refusal's connection is closed rather than its unread body discarded. */
function closesConnection(refusal: Refusal, headers: Headers): boolean {
  if (UNREAD_BODY.has(refusal.reason)) return true;
  if (refusal.reason !== "busy") return false;
  const declared = headers.has("transfer-encoding") ? NaN : Number(headers.get("content-length"));
  return !(declared <= DISCARD_REFUSED_BYTES);
}

function badRequest(reason: RefusalReason, message: string, cause?: unknown): Refusal {
  return new Refusal(400, reason, message, cause);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---- parse ----

/** Refuses anything but JSON before the body is read (415). */
const requireJson: MiddlewareHandler<AdmissionEnv> = async (c, next) => {
  const type = c.req.header("content-type") ?? "";
  if (type.split(";")[0].trim().toLowerCase() !== "application/json") {
    throw new Refusal(
      415,
      "unsupported_media_type",
      `content type must be application/json, got ${quoteValue(type)}`,
    );
  }
  await next();
};

/**
 * The one body read, with every limit on it: size (413), budget of bytes in flight (429) and body
 * timeout (408). The reservation is returned once the handler is done.
 */
function guardBody(
  budget: ByteBudget,
  maxBytes: number,
  timeoutMs: number,
): MiddlewareHandler<AdmissionEnv> {
  return async (c, next) => {
    const raw = c.req.raw;
    const length = raw.headers.has("transfer-encoding") ? null : raw.headers.get("content-length");
    const declared = length === null ? undefined : Number.parseInt(length, 10);
    let held: HeldBody;
    try {
      held = await readBody(raw, {
        budget,
        maxBytes,
        timeoutMs,
        declared: Number.isNaN(declared) ? undefined : declared,
      });
    } catch (error) {
      if (error instanceof BodyTooLargeError) {
        throw new Refusal(413, "body_too_large", error.message, error);
      }
      if (error instanceof BudgetExhaustedError) {
        throw new Refusal(429, "busy", `server busy: ${error.message}`, error);
      }
      if (error instanceof BodyTimeoutError) {
        throw new Refusal(408, "body_timeout", error.message, error);
      }
      if (error instanceof BodyAbortedError) {
        throw new Refusal(400, "body_aborted", error.message, error);
      }
      throw error;
    }
    c.set("body", held.bytes);
    try {
      await next();
    } finally {
      held.release();
    }
  };
}

/** The body as text: not empty, valid UTF-8 (400 otherwise). */
function decodeText(bytes: Uint8Array): string {
  if (bytes.byteLength === 0) throw badRequest("empty_body", "empty body");
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (error) {
    throw badRequest("invalid_utf8", "body is not valid UTF-8", error);
  }
}

/** The review's `request`, once the body is an `admission.k8s.io/v1` AdmissionReview. */
function parseReview(text: string): AdmissionRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw badRequest("invalid_json", `body is not JSON: ${(error as Error).message}`, error);
  }
  if (!isObject(body)) throw badRequest("not_admission_review", "body is not a JSON object");
  if (body.apiVersion !== "admission.k8s.io/v1") {
    throw badRequest(
      "not_admission_review",
      `apiVersion must be admission.k8s.io/v1, got ${quoteValue(body.apiVersion ?? null)}`,
    );
  }
  if (body.kind !== "AdmissionReview") {
    throw badRequest(
      "not_admission_review",
      `kind must be AdmissionReview, got ${quoteValue(body.kind ?? null)}`,
    );
  }
  const request = body.request;
  if (!isObject(request)) {
    throw badRequest("not_admission_review", "AdmissionReview has no request");
  }
  if (typeof request.uid !== "string" || request.uid === "") {
    throw badRequest("not_admission_review", "AdmissionReview request has no uid");
  }
  return request as unknown as AdmissionRequest;
}

// ---- filter ----

/**
 * A v1 Pod CREATE labelled for injection; everything else is admitted as is. A dry run
 * (`request.dryRun: true`) is planned like the real create: `/mutate` has no side effects (the
 * webhook registers `sideEffects: None`), so `kubectl apply --dry-run=server` shows the pod as it
 * would be stored.
 */
function isPodToInject(request: AdmissionRequest): request is PodCreate {
  const kind = request.kind;
  const isPod = kind?.kind === "Pod" && (kind.group ?? "") === "" && kind.version === "v1";
  return isPod && request.operation === "CREATE" && isObject(request.object) &&
    wantsInjection(request.object);
}

// ---- plan ----

function base64(text: string): string {
  return new TextEncoder().encode(text).toBase64();
}

/**
 * The answer for a pod to inject: the patch, the pod unchanged (with warnings), a refusal of its
 * annotations, or what the failure policy says when the mutation throws.
 */
function planAnswer(request: PodCreate, config: AppConfig): Answer {
  const failurePolicy = config.failurePolicy ?? "Fail";
  try {
    const { patch, warnings } = (config.plan ?? planMutation)(request.object, config);
    const extra = warnings.length > 0 ? { warnings } : {};
    if (patch.length === 0) {
      return {
        result: "unchanged",
        response: { allowed: true, ...extra },
        message: warnings.join("; ") || undefined,
      };
    }
    return {
      result: "mutated",
      response: {
        allowed: true,
        patchType: "JSONPatch",
        patch: base64(JSON.stringify(patch)),
        ...extra,
      },
    };
  } catch (error) {
    if (error instanceof InvalidAnnotationError) {
      return {
        result: "rejected",
        response: {
          allowed: false,
          status: { code: 400, reason: "BadRequest", message: error.message },
        },
        message: error.message,
      };
    }
    const message = `spire-cacerts webhook failed: ${
      error instanceof Error ? error.message : String(error)
    }`;
    return {
      result: "error",
      response: failurePolicy === "Ignore"
        ? { allowed: true, warnings: [`${message}; pod admitted unchanged`] }
        : { allowed: false, status: { code: 500, reason: "InternalError", message } },
      message,
    };
  }
}

const SKIPPED: Answer = { result: "skipped", response: { allowed: true } };

// ---- respond ----

function podName(request: AdmissionRequest): string | undefined {
  const meta = request.object?.metadata;
  const name = request.name || meta?.name || (meta?.generateName ? `${meta.generateName}*` : "");
  if (!name) return undefined;
  return `${request.namespace ?? meta?.namespace ?? ""}/${name}`;
}

/** The container's memory limit; the manifest's when there is none or it cannot be read. */
function containerLimit(): number {
  try {
    return readMemoryLimit() ?? FALLBACK_MEMORY_LIMIT_BYTES;
  } catch (error) {
    // A budget default is no reason to refuse to start.
    if (error instanceof MemoryLimitError) return FALLBACK_MEMORY_LIMIT_BYTES;
    throw error;
  }
}

/**
 * Builds the admission app. Routes: `POST /mutate`; anything else is 404 `{"error": …}`.
 *
 * ```ts
 * import { DRIVER_NAME } from "../api/mod.ts";
 * const app = createApp({ driverName: DRIVER_NAME, className: "spire-ca" });
 * const response = await app.request("/mutate", { method: "POST", body: "{}" });
 * ```
 */
export function createApp(config: AppConfig): Hono<AdmissionEnv> {
  const report = config.onAdmission ?? (() => {});
  const refused = (c: AppContext, status: number, reason: RefusalReason) =>
    config.onRefused?.({ status, reason, method: c.req.method, path: c.req.path });
  const done = (c: AppContext, event: Omit<AdmissionEvent, "seconds">) =>
    report({ ...event, seconds: (performance.now() - c.get("started")) / 1000 });
  const startTimer: MiddlewareHandler<AdmissionEnv> = async (c, next) => {
    c.set("started", performance.now());
    await next();
  };
  const maxBodyBytes = config.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const budget = new ByteBudget(
    config.maxInFlightBytes ?? inFlightBytesFor(containerLimit(), maxBodyBytes),
  );
  const app = new Hono<AdmissionEnv>();

  app.post(
    "/mutate",
    startTimer,
    requireJson,
    guardBody(budget, maxBodyBytes, config.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS),
    (c) => {
      const request = parseReview(decodeText(c.get("body")));
      const answer = isPodToInject(request) ? planAnswer(request, config) : SKIPPED;
      const { uid } = request;
      done(c, { result: answer.result, uid, pod: podName(request), message: answer.message });
      return c.json({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: { uid, ...answer.response },
      });
    },
  );

  // The one error path. A 4xx is a request that is not an AdmissionReview we can answer: no
  // review is built, the reason goes back as `{"error": …}`. Anything else is a bug (500).
  app.onError((error, c) => {
    const http = error instanceof HTTPException && error.status < 500;
    const status: ContentfulStatusCode = http ? error.status : 500;
    const message = http ? error.message : `internal error: ${error.message}`;
    if (c.get("started") !== undefined) {
      done(c, { result: http ? "bad_request" : "error", message });
    }
    if (http) {
      refused(c, status, error instanceof Refusal ? error.reason : "not_admission_review");
    }
    // A body over the limit, over the budget, too slow or broken was not read in full: close the
    // connection rather than read the rest.
    if (error instanceof Refusal && closesConnection(error, c.req.raw.headers)) {
      c.header("connection", "close");
    }
    if (status === 429) c.header("retry-after", String(RETRY_AFTER_SECONDS));
    return c.json({ error: message }, status);
  });
  app.notFound((c) => {
    refused(c, 404, "not_found");
    return c.json({
      error: `no route ${c.req.method} ${c.req.path}; the endpoint is POST /mutate`,
    }, 404);
  });
  return app;
}
