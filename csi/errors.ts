/**
 * Typed errors that carry the gRPC status code the CSI spec names for them.
 *
 * @module
 */

import { status } from "@grpc/grpc-js";

/** An error returned to the CSI caller with a specific gRPC status code. */
export class CsiError extends Error {
  /** gRPC status code (e.g. `status.INVALID_ARGUMENT`). */
  readonly code: status;

  /**
   * @param code gRPC status code the spec names for this failure
   * @param message what is wrong and which field of which pod to fix
   */
  constructor(code: status, message: string) {
    super(message);
    this.name = "CsiError";
    this.code = code;
  }
}

/**
 * Why a CAProviderClass or one of its refs is unusable, as a CamelCase constant (the same words
 * the class's `Ready` condition uses as its `reason`).
 */
export type SourceReason =
  | "InvalidRef"
  | "ClassNotFound"
  | "SourceNotFound"
  | "KeyNotFound"
  | "Forbidden"
  | "SourceUnreadable"
  | "NotAllowed";

/** Options of {@link SourceError}. */
export interface SourceErrorOptions {
  /** Why it failed (default `InvalidRef`). */
  reason?: SourceReason;
  /** The underlying error, e.g. the API server's answer. */
  cause?: unknown;
}

/** A CAProviderClass, a referenced object or a key in it is unusable. */
export class SourceError extends Error {
  /** gRPC status code to use when this fails a first publish. */
  readonly code: status;
  /** Why it failed. */
  readonly reason: SourceReason;

  /**
   * @param message which object, which key, and what is wrong
   * @param code gRPC status code (default `FAILED_PRECONDITION`)
   * @param options reason and cause
   */
  constructor(
    message: string,
    code: status = status.FAILED_PRECONDITION,
    options: SourceErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SourceError";
    this.code = code;
    this.reason = options.reason ?? "InvalidRef";
  }
}

/** A Secret or ConfigMap holds none of the keys a ref may read. */
export class KeyNotFoundError extends SourceError {
  /** The object, e.g. `Secret shop/web-tls`. */
  readonly object: string;
  /** The keys looked for, in order. */
  readonly keys: readonly string[];
  /** The keys the object has (names only, never values). */
  readonly present: readonly string[];

  /**
   * @param message names the object, the keys looked for and the fix
   * @param details the object, the keys looked for and the keys present
   */
  constructor(
    message: string,
    details: { object: string; keys: readonly string[]; present: readonly string[] },
  ) {
    super(message, status.FAILED_PRECONDITION, { reason: "KeyNotFound" });
    this.name = "KeyNotFoundError";
    this.object = details.object;
    this.keys = details.keys;
    this.present = details.present;
  }
}
