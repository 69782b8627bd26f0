/**
 * The error of a refused API request: the HTTP status code with the `reason` and `message` of the
 * API server's `Status` body, in place of `@kubernetes/client-node`'s `ApiException` (whose
 * numeric `code` and raw `body` it keeps, so code that reads those works unchanged).
 *
 * @module
 */

/** The parts of a Kubernetes `Status` body that are read. */
export interface ApiStatus {
  /** `Status`. */
  kind?: string;
  /** E.g. `Forbidden`, `NotFound`, `Conflict`, `Expired`. */
  reason?: string;
  /** The API server's sentence. */
  message?: string;
  /** The HTTP status. */
  code?: number;
}

/** The API server's `message` in a Status body (JSON text or parsed), if it has one. */
export function statusMessageOf(body: unknown): string | undefined {
  let parsed: unknown = body;
  if (typeof body === "string") {
    try {
      parsed = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const message = (parsed as ApiStatus | null | undefined)?.message;
  return typeof message === "string" ? message : undefined;
}

/** An API request answered with a status other than 2xx. */
export class KubeApiError extends Error {
  /** HTTP status code (403, 404, 409, 410, 422, ...). */
  readonly code: number;
  /** The Status body's `reason` (e.g. `Forbidden`), or `""`. */
  readonly reason: string;
  /** The Status body's `message`, or `""`. */
  readonly statusMessage: string;
  /** The response body as received. */
  readonly body: string;
  /** `METHOD path` of the request. */
  readonly request: string;

  /**
   * Makes the error.
   *
   * @param request `METHOD path` of the request
   * @param code HTTP status code
   * @param body the response body (a Status object as JSON, usually)
   * @param options the underlying error, if any
   */
  constructor(request: string, code: number, body: string, options: { cause?: unknown } = {}) {
    let status: ApiStatus = {};
    try {
      const parsed = JSON.parse(body);
      if (typeof parsed === "object" && parsed !== null) status = parsed as ApiStatus;
    } catch {
      // Not a Status body (e.g. a proxy's text): the message stays empty.
    }
    const statusMessage = typeof status.message === "string" ? status.message : "";
    super(statusMessage === "" ? `HTTP ${code}` : `HTTP ${code}: ${statusMessage}`, options);
    this.name = "KubeApiError";
    this.code = code;
    this.reason = typeof status.reason === "string" ? status.reason : "";
    this.statusMessage = statusMessage;
    this.body = body;
    this.request = request;
  }
}

/** Whether `error` is a {@link KubeApiError} with HTTP status `code`. */
export function isApiStatus(error: unknown, code: number): boolean {
  return error instanceof KubeApiError && error.code === code;
}

/** A request that got no HTTP answer (connection refused, TLS failure, timeout). */
export class KubeRequestError extends Error {
  /** `METHOD path` of the request. */
  readonly request: string;

  /**
   * Makes the error.
   *
   * @param request `METHOD path` of the request
   * @param cause what the transport threw
   */
  constructor(request: string, cause: unknown) {
    super(`${request}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "KubeRequestError";
    this.request = request;
  }
}
