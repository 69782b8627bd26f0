/**
 * A list+watch cache of one collection that reports each object added, changed and deleted, as
 * `@kubernetes/client-node`'s informer did for the controllers: `start()` lists (in pages of
 * `pageSize`) and starts watching from the list's resourceVersion; a watch that ends is resumed
 * from the last resourceVersion seen, and one answered with 410 Gone lists again (the objects that
 * went missing meanwhile are reported deleted). A failed list or watch is reported to the `error` handlers
 * and the informer stops; the owner calls `start()` again (with its own backoff).
 *
 * @module
 */

import { isApiStatus } from "./api_error.ts";
import type { KubeClient, KubeObject } from "./client.ts";

/** An event of an {@link Informer}. */
export type InformerEvent = "add" | "update" | "delete";

/** Options of {@link Informer}. */
export interface InformerOptions {
  /** Field selector of the list and watch. */
  fieldSelector?: string;
  /** Label selector of the list and watch. */
  labelSelector?: string;
  /** Server-side watch timeout in seconds (default 300). */
  watchTimeoutSeconds?: number;
  /** Called after each list that succeeded. */
  onList?: () => void;
  /**
   * Objects per page of the list (`limit` and `continue`, as client-go's pager asks for 500), so a
   * large collection is never one response held in memory whole. Default 500.
   */
  pageSize?: number;
  /**
   * Turns each listed or watched object into what is kept and reported, so a cache of a large
   * collection holds only the fields its owner reads. The result must keep `metadata.name`,
   * `metadata.namespace` and `metadata.resourceVersion`. Default: the object as received.
   */
  transform?: (object: KubeObject) => object;
}

interface Meta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

function keyOf(o: unknown): string {
  const m = (o as Meta).metadata;
  return `${m?.namespace ?? ""}/${m?.name ?? ""}`;
}

function rvOf(o: unknown): string {
  return (o as Meta).metadata?.resourceVersion ?? "";
}

/** The informer; see the module documentation. */
export class Informer<T extends object = KubeObject> {
  readonly #client: KubeClient;
  readonly #path: string;
  readonly #options: InformerOptions;
  readonly #objects = new Map<string, T>();
  readonly #handlers = {
    add: [] as ((o: T) => void)[],
    update: [] as ((o: T) => void)[],
    delete: [] as ((o: T) => void)[],
    error: [] as ((error: unknown) => void)[],
  };
  #resourceVersion = "";
  #running = false;
  #stopped = false;
  #abort: AbortController | undefined;

  /**
   * Makes the informer; nothing is read until {@link start}.
   *
   * @param client the API client
   * @param path the collection, e.g. `/api/v1/namespaces`
   * @param options selectors and watch timeout
   */
  constructor(client: KubeClient, path: string, options: InformerOptions = {}) {
    this.#client = client;
    this.#path = path;
    this.#options = options;
  }

  /** Adds a handler of objects added, changed or deleted. */
  on(event: InformerEvent, handler: (o: T) => void): void;
  /** Adds a handler of a failed list or watch (the informer has stopped). */
  on(event: "error", handler: (error: unknown) => void): void;
  /** Adds a handler. */
  on(event: InformerEvent | "error", handler: (o: T) => void): void {
    this.#handlers[event].push(handler as (o: unknown) => void);
  }

  /** The objects currently known. */
  list(): T[] {
    return [...this.#objects.values()];
  }

  /**
   * Lists (unless a watch can resume), reports the differences, and starts the watch in the
   * background; resolves after the list. A failed list is reported to the `error` handlers.
   */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#stopped = false;
    if (this.#resourceVersion === "") {
      try {
        await this.#list();
      } catch (error) {
        this.#fail(error);
        return;
      }
    }
    if (this.#stopped) {
      this.#running = false;
      return;
    }
    this.#watchLoop();
  }

  /** Stops the watch. */
  stop(): Promise<void> {
    this.#stopped = true;
    this.#abort?.abort();
    return Promise.resolve();
  }

  #fail(error: unknown): void {
    this.#running = false;
    if (this.#stopped) return;
    for (const handler of this.#handlers.error) handler(error);
  }

  async #list(): Promise<void> {
    const seen = new Set<string>();
    let token: string | undefined;
    let resourceVersion = "";
    do {
      // Pages of one list come from one snapshot (the server's continue token holds it); an
      // expired token is a 410, which fails this list like any error: the owner starts again.
      const page = await this.#client.list<KubeObject>(this.#path, {
        fieldSelector: this.#options.fieldSelector,
        labelSelector: this.#options.labelSelector,
        limit: this.#options.pageSize ?? 500,
        continue: token,
      });
      for (const raw of page.items ?? []) {
        const item = this.#keep(raw);
        const key = keyOf(item);
        seen.add(key);
        const before = this.#objects.get(key);
        this.#objects.set(key, item);
        if (before === undefined) this.#emit("add", item);
        else if (rvOf(before) !== rvOf(item)) this.#emit("update", item);
      }
      resourceVersion = page.metadata?.resourceVersion ?? "";
      token = page.metadata?.continue || undefined;
    } while (token !== undefined && !this.#stopped);
    for (const [key, item] of [...this.#objects]) {
      if (seen.has(key)) continue;
      this.#objects.delete(key);
      this.#emit("delete", item);
    }
    this.#resourceVersion = resourceVersion;
    this.#options.onList?.();
  }

  #keep(object: KubeObject): T {
    const transform = this.#options.transform;
    return (transform === undefined ? object : transform(object)) as T;
  }

  #emit(event: InformerEvent, o: T): void {
    for (const handler of this.#handlers[event]) handler(o);
  }

  async #watchLoop(): Promise<void> {
    while (!this.#stopped) {
      let gone = false;
      this.#abort = new AbortController();
      try {
        await this.#client.watch(this.#path, {
          fieldSelector: this.#options.fieldSelector,
          labelSelector: this.#options.labelSelector,
          resourceVersion: this.#resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: this.#options.watchTimeoutSeconds ?? 300,
          signal: this.#abort.signal,
        }, (type, object) => {
          if (type === "ERROR") {
            if ((object as { code?: unknown }).code === 410) gone = true;
            else throw new Error(`watch of ${this.#path}: ${String(object.message ?? "error")}`);
            return;
          }
          const rv = rvOf(object);
          if (rv !== "") this.#resourceVersion = rv;
          if (type === "BOOKMARK") return;
          const key = keyOf(object);
          const o = this.#keep(object);
          if (type === "DELETED") {
            this.#objects.delete(key);
            this.#emit("delete", o);
          } else {
            const known = this.#objects.has(key);
            this.#objects.set(key, o);
            this.#emit(known ? "update" : "add", o);
          }
        });
      } catch (error) {
        if (this.#stopped) break;
        if (!isApiStatus(error, 410)) {
          this.#fail(error);
          return;
        }
        gone = true;
      }
      if (this.#stopped) break;
      if (gone) {
        this.#resourceVersion = "";
        try {
          await this.#list();
        } catch (error) {
          this.#fail(error);
          return;
        }
      }
    }
    this.#running = false;
  }
}
