/**
 * A counting semaphore: bounds how many of a kind of work run at once. The driver's re-renders
 * after a change (`--render-concurrency`) and the webhook's trust-restart writes share it.
 *
 * @module
 */

/** A counting semaphore: at most `limit` holders at once, the rest wait first come, first served. */
export class Semaphore {
  readonly #limit: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  /**
   * Makes a semaphore with every slot free.
   *
   * @param limit how many may hold it at once (a positive integer)
   * @throws {RangeError} for a limit that is not a positive integer
   */
  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`semaphore limit ${limit}: use a positive integer`);
    }
    this.#limit = limit;
  }

  /** Holders now. */
  get active(): number {
    return this.#active;
  }

  /** Waiting callers now. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Resolves once a slot is held; each call must be balanced by {@link release}. */
  async acquire(): Promise<void> {
    if (this.#active < this.#limit) {
      this.#active++;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  /** Gives a slot back, handing it straight to the longest waiter if there is one. */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }

  /**
   * Runs `fn` holding a slot.
   *
   * @param fn the work
   * @returns what `fn` returns
   */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
