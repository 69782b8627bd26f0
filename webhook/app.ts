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
 * `onRefused` with its {@link RefusalReason}. The body limit is
 * `hono/body-limit`, the only one on the request path: a declared `Content-Length` over the limit
 * is refused before any byte is read, a streamed body once it passes the limit; a declared length
 * within it takes the whole-body read, about 70 µs cheaper per review than reading the stream chunk
 * by chunk.
 *
 * @module
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
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

/** Largest AdmissionReview accepted (the apiserver's own request limit is 3 MiB). */
export const DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024;

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
 * `not_found` (404: another route or method); `invalid_http` (400: a request the HTTP adapter cannot
 * turn into a `Request`, e.g. a malformed Host header; counted by the server shell).
 */
export type RefusalReason =
  | "invalid_http"
  | "body_too_large"
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
  /** Called once per `/mutate` call; this is where the shell counts and logs. */
  onAdmission?: (event: AdmissionEvent) => void;
  /** Called once per refused request (every 4xx, `/mutate` or not): counted and logged. */
  onRefused?: (event: RefusalEvent) => void;
  /** The mutation; replaceable so tests can make it throw. Defaults to {@link planMutation}. */
  plan?: typeof planMutation;
}

/** The Hono environment of {@link createApp}: `started` is set when a `/mutate` call begins. */
export interface AdmissionEnv {
  /** Per-request values. */
  Variables: {
    /** `performance.now()` when the `/mutate` call began. */
    started: number;
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
    status: 400 | 413 | 415,
    readonly reason: RefusalReason,
    message: string,
    cause?: unknown,
  ) {
    super(status, { message, cause });
  }
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

/** The one body limit (413): by the declared length when there is one, else while streaming. */
function limitBody(limit: number): MiddlewareHandler<AdmissionEnv> {
  return bodyLimit({
    maxSize: limit,
    onError: (c) => {
      const declared = c.req.raw.headers.has("transfer-encoding")
        ? null
        : c.req.header("content-length");
      const message = declared !== undefined && declared !== null
        ? `body of ${declared} bytes exceeds ${limit} bytes`
        : `body exceeds ${limit} bytes`;
      throw new Refusal(413, "body_too_large", message, {
        limit,
        declared: declared ?? undefined,
      });
    },
  });
}

/** The body as text: present, not empty, valid UTF-8 (400 otherwise). */
async function readText(request: Request): Promise<string> {
  if (request.body === null) throw badRequest("empty_body", "empty body");
  const bytes = new Uint8Array(await request.arrayBuffer());
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
  const app = new Hono<AdmissionEnv>();

  app.post(
    "/mutate",
    startTimer,
    requireJson,
    limitBody(config.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES),
    async (c) => {
      const request = parseReview(await readText(c.req.raw));
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
    // A body over the limit was not read: close the connection rather than read it.
    if (status === 413) c.header("connection", "close");
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
