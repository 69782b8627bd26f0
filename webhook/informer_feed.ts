/**
 * A watched collection as the webhook's controllers consume it: {@link Feed} delivers each object
 * listed, added, changed and deleted, and {@link informerFeed} implements it with `kube/`'s
 * informers, retrying a failed list or watch with backoff (1 s doubling to 30 s) and logging one
 * warning per failing streak. The class status and trust-restart controllers both read through
 * it; tests pass in-memory feeds.
 *
 * @module
 */

import { Backoff, type Logger } from "../cli/mod.ts";
import { describeApiError, Informer, type KubeClient, type KubeObject } from "../kube/mod.ts";

/** Callbacks of a {@link Feed}. */
export interface FeedHandlers<T> {
  /** An object was listed, added or changed. */
  upsert(object: T): void;
  /** An object was deleted. */
  remove(object: T): void;
}

/** A watched collection (informers in production, a list in tests). */
export interface Feed<T> {
  /** Starts delivering; resolves once the current objects were delivered. */
  start(handlers: FeedHandlers<T>): Promise<void>;
  /** Stops delivering. */
  stop(): Promise<void>;
}

/** One collection of an {@link informerFeed}. */
export interface FeedSource<T> {
  /** The collection's path, e.g. `/apis/apps/v1/deployments`. */
  path: string;
  /** What is kept of each object (see {@link Informer}'s `transform`); default: all of it. */
  transform?: (object: KubeObject) => T;
}

/**
 * A {@link Feed} over informers of `sources`, delivered through one set of handlers.
 *
 * @param client the API client
 * @param what the objects' name in log messages, e.g. `CAProviderClass`
 * @param sources the collections
 * @param log where retries are logged
 */
export function informerFeed<T extends object>(
  client: KubeClient,
  what: string,
  sources: readonly FeedSource<T>[],
  log: Logger,
): Feed<T> {
  const informers: Informer<T>[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let stopped = false;
  return {
    async start(handlers) {
      await Promise.all(sources.map(({ path, transform }) => {
        const backoff = new Backoff({ initialMs: 1_000, maxMs: 30_000 });
        let failing = false;
        const informer = new Informer<T>(client, path, {
          transform,
          onList: () => {
            if (failing) log.info(`listing ${what} again`, { path });
            failing = false;
            backoff.reset();
          },
        });
        informer.on("add", (o) => handlers.upsert(o));
        informer.on("update", (o) => handlers.upsert(o));
        informer.on("delete", (o) => handlers.remove(o));
        informer.on("error", (error: unknown) => {
          if (stopped) return;
          const delay = backoff.next();
          const fields = { path, error: describeApiError(error), retryInMs: delay };
          if (!failing) log.warn(`${what} list or watch failed; retrying`, fields);
          else log.debug(`${what} list or watch failed again`, fields);
          failing = true;
          const timer = setTimeout(() => {
            timers.delete(timer);
            if (!stopped) informer.start().catch(() => {});
          }, delay);
          timers.add(timer);
        });
        informers.push(informer);
        return informer.start();
      }));
    },
    async stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.all(informers.map((i) => i.stop()));
    },
  };
}
