/**
 * The node server's per-volume lock: {@link KeyedLock} runs the calls for one volume one after
 * another (kubelet retries a publish while the first is still rendering). How many re-renders run
 * at once after a change is bounded by `cli/`'s `Semaphore` (`--render-concurrency`, default 32:
 * one Secret shared by thousands of volumes must not start thousands of renders and writes
 * together).
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
