/**
 * The admission endpoint as a Hono app: a pure `fetch(Request) -> Response` built from its
 * configuration, with no module state, so it runs the same under `app.request()`, `Deno.serve` or
 * the `node:https` shell.
 *
 * @module
 */

import { Hono } from "hono";
import type { V1Pod } from "@kubernetes/client-node";
import {
  InvalidAnnotationError,
  type MutationConfig,
  planMutation,
  wantsInjection,
} from "./mutate.ts";

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

/** Configuration of {@link createApp}. */
export interface AppConfig extends MutationConfig {
  /** What a failing webhook answers: `Fail` rejects the pod, `Ignore` admits it unchanged. */
  failurePolicy?: "Fail" | "Ignore";
  /** Body size limit in bytes (default {@link DEFAULT_MAX_BODY_BYTES}). */
  maxBodyBytes?: number;
  /** Called once per `/mutate` call; this is where the shell counts and logs. */
  onAdmission?: (event: AdmissionEvent) => void;
  /** The mutation; replaceable so tests can make it throw. Defaults to {@link planMutation}. */
  plan?: typeof planMutation;
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

/** Thrown for a review that cannot be answered; becomes a 4xx with the message. */
export class BadAdmissionRequestError extends Error {
  /** HTTP status to answer with. */
  readonly status: 400 | 413 | 415;
  /** Creates the error with its HTTP status. */
  constructor(status: 400 | 413 | 415, message: string) {
    super(message);
    this.name = "BadAdmissionRequestError";
    this.status = status;
  }
}

function parseReview(body: unknown): AdmissionRequest {
  const bad = (message: string) => new BadAdmissionRequestError(400, message);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw bad("body is not a JSON object");
  }
  const review = body as Record<string, unknown>;
  if (review.apiVersion !== "admission.k8s.io/v1") {
    throw bad(
      `apiVersion must be admission.k8s.io/v1, got ${JSON.stringify(review.apiVersion ?? null)}`,
    );
  }
  if (review.kind !== "AdmissionReview") {
    throw bad(`kind must be AdmissionReview, got ${JSON.stringify(review.kind ?? null)}`);
  }
  const request = review.request;
  if (typeof request !== "object" || request === null || Array.isArray(request)) {
    throw bad("AdmissionReview has no request");
  }
  const uid = (request as Record<string, unknown>).uid;
  if (typeof uid !== "string" || uid === "") throw bad("AdmissionReview request has no uid");
  return request as AdmissionRequest;
}

async function readBody(request: Request, limit: number): Promise<string> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    throw new BadAdmissionRequestError(413, `body of ${declared} bytes exceeds ${limit} bytes`);
  }
  if (request.body === null) throw new BadAdmissionRequestError(400, "empty body");
  let bytes: Uint8Array;
  if (declared !== null) {
    // A declared length within the limit bounds the read (servers enforce it): take the fast
    // whole-body path, about 70 µs cheaper per review than reading the stream chunk by chunk.
    bytes = new Uint8Array(await request.arrayBuffer());
  } else {
    bytes = await readLimited(request.body, limit);
  }
  if (bytes.byteLength > limit) {
    throw new BadAdmissionRequestError(413, `body exceeds ${limit} bytes`);
  }
  if (bytes.byteLength === 0) throw new BadAdmissionRequestError(400, "empty body");
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new BadAdmissionRequestError(400, "body is not valid UTF-8");
  }
}

async function readLimited(body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new BadAdmissionRequestError(413, `body exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

function podName(request: AdmissionRequest): string | undefined {
  const meta = request.object?.metadata;
  const name = request.name || meta?.name || (meta?.generateName ? `${meta.generateName}*` : "");
  if (!name) return undefined;
  return `${request.namespace ?? meta?.namespace ?? ""}/${name}`;
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * Builds the admission app. Routes: `POST /mutate`.
 *
 * ```ts
 * const app = createApp({ driverName: "cacerts.csi.cert-manager.io", className: "spire-ca" });
 * const response = await app.request("/mutate", { method: "POST", body: "{}" });
 * ```
 */
export function createApp(config: AppConfig): Hono {
  const limit = config.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const failurePolicy = config.failurePolicy ?? "Fail";
  const plan = config.plan ?? planMutation;
  const report = config.onAdmission ?? (() => {});
  const app = new Hono();

  app.post("/mutate", async (c) => {
    const started = performance.now();
    const done = (event: Omit<AdmissionEvent, "seconds">) =>
      report({ ...event, seconds: (performance.now() - started) / 1000 });
    const review = (uid: string, response: Record<string, unknown>) =>
      c.json({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: { uid, ...response },
      });

    let request: AdmissionRequest;
    try {
      const type = c.req.header("content-type") ?? "";
      if (type.split(";")[0].trim().toLowerCase() !== "application/json") {
        throw new BadAdmissionRequestError(
          415,
          `content type must be application/json, got ${JSON.stringify(type)}`,
        );
      }
      const text = await readBody(c.req.raw, limit);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (error) {
        throw new BadAdmissionRequestError(400, `body is not JSON: ${(error as Error).message}`);
      }
      request = parseReview(body);
    } catch (error) {
      const status = error instanceof BadAdmissionRequestError ? error.status : 400;
      const message = error instanceof Error ? error.message : String(error);
      done({ result: "bad_request", message });
      return c.json({ error: message }, status);
    }

    const uid = request.uid;
    const pod = podName(request);
    try {
      const kind = request.kind;
      const isPod = kind?.kind === "Pod" && (kind.group ?? "") === "" && kind.version === "v1";
      if (
        !isPod || request.operation !== "CREATE" || request.dryRun === true ||
        typeof request.object !== "object" || request.object === null ||
        !wantsInjection(request.object)
      ) {
        done({ result: "skipped", uid, pod });
        return review(uid, { allowed: true });
      }
      const { patch, warnings } = plan(request.object, config);
      const extra = warnings.length > 0 ? { warnings } : {};
      if (patch.length === 0) {
        done({ result: "unchanged", uid, pod, message: warnings.join("; ") || undefined });
        return review(uid, { allowed: true, ...extra });
      }
      done({ result: "mutated", uid, pod });
      return review(uid, {
        allowed: true,
        patchType: "JSONPatch",
        patch: base64(JSON.stringify(patch)),
        ...extra,
      });
    } catch (error) {
      if (error instanceof InvalidAnnotationError) {
        done({ result: "rejected", uid, pod, message: error.message });
        return review(uid, {
          allowed: false,
          status: { code: 400, reason: "BadRequest", message: error.message },
        });
      }
      const message = `spire-cacerts webhook failed: ${
        error instanceof Error ? error.message : String(error)
      }`;
      done({ result: "error", uid, pod, message });
      return failurePolicy === "Ignore"
        ? review(uid, { allowed: true, warnings: [`${message}; pod admitted unchanged`] })
        : review(uid, {
          allowed: false,
          status: { code: 500, reason: "InternalError", message },
        });
    }
  });

  app.onError((error, c) => c.json({ error: `internal error: ${error.message}` }, 500));
  return app;
}
