/**
 * The driver's errors and their gRPC status codes, in one place: {@link CsiError} carries the
 * code the CSI spec names; {@link toCsiError} maps everything else (a {@link SourceError} by its
 * reason, a {@link StoreTooLargeError} to `RESOURCE_EXHAUSTED`) to one.
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

/** The flag that caps a volume's tmpfs. */
export const TMPFS_SIZE_FLAG = "--tmpfs-size";

/**
 * A rendered store cannot be swapped in within the tmpfs cap (the store on disk and the new
 * store's changed files side by side); raised before anything is mounted or written, so an
 * update keeps the last good store.
 */
export class StoreTooLargeError extends Error {
  /** Bytes the store occupies on a tmpfs (files rounded up to pages). */
  readonly payloadBytes: number;
  /** Bytes the tmpfs must hold at the peak of the swap. */
  readonly neededBytes: number;
  /** The cap, in bytes. */
  readonly limitBytes: number;
  /** The cap as the flag was given (e.g. `8Mi`). */
  readonly limitText: string;

  /**
   * Makes the error.
   *
   * @param payloadBytes bytes the store occupies on a tmpfs
   * @param neededBytes bytes a swap needs at its peak
   * @param limitBytes the cap in bytes
   * @param limitText the cap as given to {@link TMPFS_SIZE_FLAG}
   */
  constructor(payloadBytes: number, neededBytes: number, limitBytes: number, limitText: string) {
    super(
      `trust store of ${payloadBytes} bytes needs ${neededBytes} bytes of tmpfs to be swapped ` +
        `in (with the store on disk and 64 KiB of slack), over the limit of ${limitBytes} bytes ` +
        `set by ${TMPFS_SIZE_FLAG}=${limitText}; raise ${TMPFS_SIZE_FLAG} or reference fewer ` +
        `certificates`,
    );
    this.name = "StoreTooLargeError";
    this.payloadBytes = payloadBytes;
    this.neededBytes = neededBytes;
    this.limitBytes = limitBytes;
    this.limitText = limitText;
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
  const code = error instanceof SourceError
    ? SOURCE_STATUS[error.reason]
    : error instanceof StoreTooLargeError
    ? status.RESOURCE_EXHAUSTED
    : fallback;
  return new CsiError(code, message, { cause: error });
}
