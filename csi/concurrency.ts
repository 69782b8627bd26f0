/**
 * The two concurrency limits of the node server: {@link KeyedLock} runs the calls for one volume
 * one after another (kubelet retries a publish while the first is still rendering), and
 * {@link Semaphore} bounds how many re-renders run at once after a change (`--render-concurrency`,
 * default 32: one Secret shared by thousands of volumes must not start thousands of renders and
 * writes together).
 *
 * @module
 */

/** Serializes async calls per key: a call starts once the previous call for its key settled. */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Number of keys with a call running or queued. */
  get size(): number {
    return this.#tails.size;
  }

  /**
   * Runs `fn` after every earlier call for `key` settled (whether it resolved or threw).
   *
   * @param key what the calls share, e.g. the volume id
   * @param fn the call
   * @returns what `fn` returns
   */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#tails.set(key, next);
    next.finally(() => {
      if (this.#tails.get(key) === next) this.#tails.delete(key);
    }).catch(() => {});
    return next;
  }
}

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
