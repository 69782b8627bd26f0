/**
 * {@link SvidWatcher}: keeps the last good SVID set of a directory current. It watches the
 * directory (debounced), re-reads on a timer as a safety net, and retries shortly after a torn
 * set, never throwing into the event loop.
 *
 * @module
 */

import { LastGood } from "./last_good.ts";
import { loadSvidSet, type SvidFileNames, type SvidSet, SvidSetError } from "./svid.ts";

/** Options for {@link SvidWatcher}. */
export interface SvidWatcherOptions {
  /** File names (default `svid.pem`, `svid_key.pem`, `svid_bundle.pem`). */
  names?: Partial<SvidFileNames>;
  /** Quiet time after the last file event before reading (default 100 ms). */
  debounceMs?: number;
  /** Periodic re-read (default 30 s). */
  resyncMs?: number;
  /** Delay before reading again after a rejected set (default 250 ms). */
  retryMs?: number;
  /** Called for every rejected read (default: nothing). Errors thrown by it are swallowed. */
  onError?: (error: SvidSetError | Error) => void;
  /**
   * Called for a good read that follows a rejected one, whether or not the set changed (a file
   * restored to what it was is a recovery but no update). Errors thrown by it are swallowed.
   */
  onRecovered?: () => void;
}

/** Listener for new sets; returns nothing, errors it throws are reported to `onError`. */
export type SvidListener = (set: SvidSet, previous: SvidSet | undefined) => void;

/** Thrown by {@link SvidWatcher.ready} when the watcher is closed before any good set arrived. */
export class SvidWatcherClosedError extends Error {
  /**
   * Creates the error.
   *
   * @param dir the watched directory
   */
  constructor(dir: string) {
    super(`SVID watcher for ${dir} was closed before a valid SVID set was read`);
    this.name = "SvidWatcherClosedError";
  }
}

/**
 * Watches an spiffe-helper directory and keeps the last good {@link SvidSet}.
 *
 * ```ts
 * const watcher = new SvidWatcher("/run/spiffe/certs");
 * const set = await watcher.ready();
 * watcher.onUpdate((next) => console.log("new SVID until", next.notAfter));
 * ```
 */
export class SvidWatcher {
  /** The watched directory. */
  readonly dir: string;
  #options:
    & Required<Omit<SvidWatcherOptions, "names" | "onError" | "onRecovered">>
    & SvidWatcherOptions;
  #latest = new LastGood<SvidSet>();
  #listeners = new Set<SvidListener>();
  #fsWatcher: Deno.FsWatcher | undefined;
  #debounce: ReturnType<typeof setTimeout> | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #resync: ReturnType<typeof setInterval> | undefined;
  #reading = false;
  #again = false;
  #closed = false;
  #readyWaiters: { resolve: (set: SvidSet) => void; reject: (error: Error) => void }[] = [];

  /**
   * Starts watching at once (an initial read is scheduled immediately).
   *
   * @param dir directory spiffe-helper writes to
   * @param options debounce, resync and retry timings, file names, error callback
   */
  constructor(dir: string, options: SvidWatcherOptions = {}) {
    this.dir = dir;
    this.#options = { debounceMs: 100, resyncMs: 30_000, retryMs: 250, ...options };
    this.#startFsWatch();
    this.#resync = setInterval(() => this.#schedule(0), this.#options.resyncMs);
    this.#schedule(0);
  }

  /** The last good set, or undefined before the first one. */
  current(): SvidSet | undefined {
    return this.#latest.value;
  }

  /** Why the last read was rejected (cleared by a good read). */
  lastError(): Error | undefined {
    return this.#latest.error;
  }

  /**
   * Resolves with the first good set (at once if there is one).
   *
   * @param timeoutMs reject after this long (default: wait until closed)
   * @throws {SvidWatcherClosedError} when closed first
   */
  ready(timeoutMs?: number): Promise<SvidSet> {
    const current = this.#latest.value;
    if (current) return Promise.resolve(current);
    if (this.#closed) return Promise.reject(new SvidWatcherClosedError(this.dir));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this.#readyWaiters.push(waiter);
      if (timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          const i = this.#readyWaiters.indexOf(waiter);
          if (i === -1) return;
          this.#readyWaiters.splice(i, 1);
          reject(
            new Error(
              `no valid SVID set in ${this.dir} after ${timeoutMs} ms` +
                (this.#latest.error ? `: ${this.#latest.error.message}` : ""),
            ),
          );
        }, timeoutMs);
        const clear = () => clearTimeout(timer);
        waiter.resolve = (set) => (clear(), resolve(set));
        waiter.reject = (error) => (clear(), reject(error));
      }
    });
  }

  /**
   * Registers a listener for every new good set.
   *
   * @returns a function that removes it
   */
  onUpdate(listener: SvidListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Reads now (outside the debounce) and resolves once done; never rejects. */
  async refresh(): Promise<SvidSet | undefined> {
    await this.#read();
    return this.#latest.value;
  }

  /** Stops watching and timers. Pending `ready()` calls reject. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#debounce);
    clearTimeout(this.#retry);
    clearInterval(this.#resync);
    try {
      this.#fsWatcher?.close();
    } catch { /* already closed */ }
    for (const waiter of this.#readyWaiters.splice(0)) {
      waiter.reject(new SvidWatcherClosedError(this.dir));
    }
  }

  #report(error: Error): void {
    this.#latest.reject(error);
    try {
      this.#options.onError?.(error);
    } catch { /* a faulty callback must not stop the watcher */ }
  }

  #startFsWatch(): void {
    try {
      this.#fsWatcher = Deno.watchFs(this.dir, { recursive: false });
    } catch (error) {
      // The directory may not exist yet: the periodic and retry reads cover it.
      this.#report(error as Error);
      return;
    }
    const watcher = this.#fsWatcher;
    (async () => {
      try {
        for await (const _event of watcher) {
          if (this.#closed) break;
          this.#schedule(this.#options.debounceMs);
        }
      } catch (error) {
        if (!this.#closed) this.#report(error as Error);
      } finally {
        // A watch that ended (its directory removed, an error) is started again by the next read.
        if (this.#fsWatcher === watcher) this.#fsWatcher = undefined;
      }
    })();
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.#read(), delayMs);
  }

  async #read(): Promise<void> {
    if (this.#closed) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = true;
    try {
      do {
        this.#again = false;
        await this.#readOnce();
      } while (this.#again && !this.#closed);
    } finally {
      this.#reading = false;
    }
  }

  async #readOnce(): Promise<void> {
    let set: SvidSet;
    try {
      set = await loadSvidSet(this.dir, this.#options.names);
    } catch (error) {
      this.#report(error as Error);
      clearTimeout(this.#retry);
      this.#retry = setTimeout(() => void this.#read(), this.#options.retryMs);
      if (!this.#fsWatcher && !this.#closed) this.#startFsWatch();
      return;
    }
    // The same set read again is a good read too: it clears the error and keeps the object.
    const previous = this.#latest.value;
    const same = previous?.id === set.id;
    const recovered = this.#latest.error !== undefined;
    this.#latest.accept(same ? previous : set);
    if (recovered && !this.#closed) {
      try {
        this.#options.onRecovered?.();
      } catch { /* a faulty callback must not stop the watcher */ }
    }
    if (this.#closed) return;
    // The directory may have appeared, files and all, between two retries: without this the set
    // would be read once and later rotations only on the periodic re-read.
    if (!this.#fsWatcher) this.#startFsWatch();
    if (same) return;
    for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve(set);
    for (const listener of this.#listeners) {
      try {
        listener(set, previous);
      } catch (error) {
        this.#report(error as Error);
      }
    }
  }
}
