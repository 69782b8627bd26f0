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

/** A CAProviderClass, a referenced object or a key in it is unusable. */
export class SourceError extends Error {
  /** gRPC status code to use when this fails a first publish. */
  readonly code: status;

  /**
   * @param message which object, which key, and what is wrong
   * @param code gRPC status code (default `FAILED_PRECONDITION`)
   */
  constructor(message: string, code: status = status.FAILED_PRECONDITION) {
    super(message);
    this.name = "SourceError";
    this.code = code;
  }
}
