/**
 * The retry delay of a list, watch or apply that failed: it starts at `initialMs`, doubles after
 * every failure up to `maxMs`, and goes back to `initialMs` after a success. One policy for every
 * list/watch loop (ObjectWatcher, the CAProviderClass informer, the ClusterSPIFFEID sync), so a
 * failing apiserver is asked at the same falling rate by each of them; each keeps its own numbers,
 * given with the reason where it is made.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { Backoff, type BackoffOptions } from "./backoff.ts";
 * const options: BackoffOptions = { initialMs: 200, maxMs: 1_000 };
 * const backoff = new Backoff(options);
 * assert.deepEqual([backoff.next(), backoff.next(), backoff.next(), backoff.next()], [200, 400, 800, 1_000]);
 * backoff.reset();
 * assert.equal(backoff.next(), 200);
 * ```
 *
 * @module
 */

/** Bounds of a {@linkcode Backoff}. */
export interface BackoffOptions {
  /** First delay after a success, in ms. */
  initialMs: number;
  /** Longest delay, in ms. */
  maxMs: number;
}

/** A doubling retry delay between `initialMs` and `maxMs`. */
export class Backoff {
  readonly #options: BackoffOptions;
  #delay: number;

  /**
   * Starts at `initialMs`.
   *
   * @param options the bounds
   */
  constructor(options: BackoffOptions) {
    this.#options = options;
    this.#delay = options.initialMs;
  }

  /** The delay the next retry waits, without counting a failure. */
  get current(): number {
    return this.#delay;
  }

  /** Counts a failure: returns the delay to wait now and doubles the next one (up to `maxMs`). */
  next(): number {
    const delay = this.#delay;
    this.#delay = Math.min(delay * 2, this.#options.maxMs);
    return delay;
  }

  /** Counts a success: the next failure waits `initialMs` again. */
  reset(): void {
    this.#delay = this.#options.initialMs;
  }
}
