/**
 * The last good value of something re-read from disk (an SVID set, a trust file) and why the
 * latest read was rejected: a bad read keeps the value in use and records the error, a good read
 * replaces it and clears the error. SvidWatcher and TrustSource both keep exactly this pair, so a
 * file caught mid-rewrite never replaces what is being served with nothing.
 *
 * @module
 */

/** A last good value and the latest read's error. */
export class LastGood<T> {
  #value: T | undefined;
  #error: Error | undefined;

  /** The last good value, or undefined before the first good read. */
  get value(): T | undefined {
    return this.#value;
  }

  /** Why the latest read was rejected; undefined after a good one. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Records a good read.
   *
   * @returns the value it replaces
   */
  accept(value: T): T | undefined {
    const previous = this.#value;
    this.#value = value;
    this.#error = undefined;
    return previous;
  }

  /** Records a rejected read; the last good value stays. */
  reject(error: Error): void {
    this.#error = error;
  }
}
