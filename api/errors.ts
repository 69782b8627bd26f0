/**
 * Why a CAProviderClass source cannot be used: one error type with a reason (the same CamelCase
 * words the class's `Ready` condition uses) and the underlying cause.
 *
 * @module
 */

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

/**
 * A CAProviderClass, a referenced object or a key in it is unusable. Transports map the
 * {@link SourceReason} to their own status (the driver: `csi/errors.ts`).
 */
export class SourceError extends Error {
  /** Why it failed. */
  readonly reason: SourceReason;

  /**
   * Makes the error.
   *
   * @param message which object, which key, and what is wrong
   * @param options reason (default `InvalidRef`) and cause
   */
  constructor(message: string, options: SourceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SourceError";
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
   * Makes the error.
   *
   * @param message names the object, the keys looked for and the fix
   * @param details the object, the keys looked for and the keys present
   */
  constructor(
    message: string,
    details: { object: string; keys: readonly string[]; present: readonly string[] },
  ) {
    super(message, { reason: "KeyNotFound" });
    this.name = "KeyNotFoundError";
    this.object = details.object;
    this.keys = details.keys;
    this.present = details.present;
  }
}
