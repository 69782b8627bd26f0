/**
 * Typed errors of the trust-store engine. Messages name the source at fault and never quote
 * key material.
 *
 * @module
 */

import type { DroppedCertificate } from "./dropped.ts";

/** A PEM source is not a clean list of `CERTIFICATE` blocks. */
export class PemError extends Error {
  /** Name of the offending source, e.g. `Secret spire/spire-ca-bundle key ca.crt`. */
  readonly source: string;
  /**
   * Creates an instance.
   *
   * @param source name of the offending source
   * @param message what is wrong with it
   */
  constructor(source: string, message: string) {
    super(`${source}: ${message}`);
    this.name = "PemError";
    this.source = source;
  }
}

/** Every certificate was filtered out (or none was given): an empty store is never published. */
export class EmptyTrustSetError extends Error {
  /**
   * Creates an instance.
   *
   * @param warnings the reasons each certificate was dropped
   * @param dropped the same certificates in structured form (`TrustSet.dropped`)
   */
  constructor(
    readonly warnings: readonly string[],
    readonly dropped: readonly DroppedCertificate[] = [],
  ) {
    super(
      `no certificate left to publish; refusing to write an empty trust store` +
        (warnings.length ? ` (${warnings.join("; ")})` : ""),
    );
    this.name = "EmptyTrustSetError";
  }
}

/** The configured base roots (bundled package or a file) could not be read. */
export class BaseRootsError extends Error {
  /**
   * Creates an instance.
   *
   * @param message what could not be read and why
   */
  constructor(message: string) {
    super(message);
    this.name = "BaseRootsError";
  }
}

/** A value is not one of the supported OS families. */
export class UnknownOsFamilyError extends Error {
  /**
   * Creates an instance.
   *
   * @param value the rejected value
   * @param valid the accepted values
   */
  constructor(readonly value: string, readonly valid: readonly string[]) {
    super(`unknown OS family ${JSON.stringify(value)}; valid values: ${valid.join(", ")}`);
    this.name = "UnknownOsFamilyError";
  }
}

/** A payload path would escape the volume or collide with the writer's own entries. */
export class PayloadPathError extends Error {
  /**
   * Creates an instance.
   *
   * @param path the rejected path
   * @param reason why it is rejected
   */
  constructor(readonly path: string, reason: string) {
    super(`invalid payload path ${JSON.stringify(path)}: ${reason}`);
    this.name = "PayloadPathError";
  }
}
