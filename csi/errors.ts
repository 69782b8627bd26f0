/**
 * The driver's errors and their gRPC status codes, in one place: {@link CsiError} carries the
 * code the CSI spec names; {@link toCsiError} maps everything else (a {@link SourceError} by its
 * reason) to one.
 *
 * @module
 */

import { status } from "@grpc/grpc-js";
import { SourceError, type SourceReason } from "../api/mod.ts";

/** An error returned to the CSI caller with a specific gRPC status code. */
export class CsiError extends Error {
  /** gRPC status code (e.g. `status.INVALID_ARGUMENT`). */
  readonly code: status;

  /**
   * Makes the error.
   *
   * @param code gRPC status code the spec names for this failure
   * @param message what is wrong and which field of which pod to fix
   * @param options the underlying error
   */
  constructor(code: status, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CsiError";
    this.code = code;
  }
}

/** The status a first publish fails with, per source problem. */
export const SOURCE_STATUS: Readonly<Record<SourceReason, status>> = {
  InvalidRef: status.FAILED_PRECONDITION,
  ClassNotFound: status.NOT_FOUND,
  SourceNotFound: status.NOT_FOUND,
  KeyNotFound: status.FAILED_PRECONDITION,
  Forbidden: status.PERMISSION_DENIED,
  SourceUnreadable: status.UNAVAILABLE,
  NotAllowed: status.PERMISSION_DENIED,
};

/**
 * The {@link CsiError} an error is answered with: itself, a {@link SourceError} by its reason,
 * anything else with `fallback`.
 *
 * @param error what failed
 * @param suffix appended to the message (e.g. which pod and volume)
 * @param fallback code for errors that carry none
 */
export function toCsiError(
  error: unknown,
  suffix = "",
  fallback: status = status.FAILED_PRECONDITION,
): CsiError {
  if (error instanceof CsiError) return error;
  const message = `${error instanceof Error ? error.message : String(error)}${suffix}`;
  const code = error instanceof SourceError ? SOURCE_STATUS[error.reason] : fallback;
  return new CsiError(code, message, { cause: error });
}
