/**
 * Ref-counted watches of single named objects (Secrets, ConfigMaps, CAProviderClasses). Each
 * object that a published volume uses is listed and watched with
 * `fieldSelector=metadata.name=<name>` in its namespace, shared by every volume that uses it, and
 * dropped when the last one goes: no cluster-wide or namespace-wide Secret watch. After a watch
 * ends (timeout, 410 Gone, network error) the object is listed again and the watch resumes from
 * the list's resourceVersion. A list that fails (403, network) is retried with backoff; its error
 * is kept ({@link ObjectWatcher.error}) until a list succeeds, and both changes are reported.
 *
 * @module
 */

import { CoreV1Api, CustomObjectsApi, type KubeConfig, Watch } from "@kubernetes/client-node";
import { CLASS_GROUP, CLASS_PLURAL, CLASS_VERSION } from "../api/mod.ts";
import { Backoff, LOG_KEYS, type Logger } from "../cli/mod.ts";

/** Kinds the driver watches. */
export type WatchedKind = "Secret" | "ConfigMap" | "CAProviderClass";

/** Identity of a watched object. */
export interface WatchedObject {
  /** Kind. */
  kind: WatchedKind;
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
}

/** The key used for a watched object: `Kind/namespace/name`. */
export function objectKey(o: WatchedObject): string {
  return `${o.kind}/${o.namespace}/${o.name}`;
}

interface Entry extends WatchedObject {
  key: string;
  refs: number;
  /** undefined: not loaded yet; null: does not exist. */
  object: Record<string, unknown> | null | undefined;
  /** The last list's error; undefined once a list succeeded. */
  error?: unknown;
  loaded: Promise<void>;
  stopped: boolean;
  abort?: AbortController;
  wake?: () => void;
}

interface ObjectMeta {
  metadata?: { resourceVersion?: string; name?: string };
}

/** Options for {@link ObjectWatcher}. */
export interface ObjectWatcherOptions {
  /** Cluster access. */
  kubeConfig: KubeConfig;
  /** Structured logger. */
  logger: Logger;
  /** Called with the key of an object whose content changed (including creation or deletion). */
  onChange: (key: string) => void;
  /** Server-side watch timeout in seconds (default 300). */
  watchTimeoutSeconds?: number;
  /** Longest wait between retries of a failed list in ms (default 10 000). */
  maxRetryMs?: number;
}

function pathOf(o: WatchedObject): string {
  switch (o.kind) {
    case "Secret":
      return `/api/v1/namespaces/${o.namespace}/secrets`;
    case "ConfigMap":
      return `/api/v1/namespaces/${o.namespace}/configmaps`;
    case "CAProviderClass":
      return `/apis/${CLASS_GROUP}/${CLASS_VERSION}/namespaces/${o.namespace}/${CLASS_PLURAL}`;
  }
}

function rvOf(o: unknown): string | undefined {
  return (o as ObjectMeta | null | undefined)?.metadata?.resourceVersion;
}

/** What identifies an error for change detection: the HTTP status code, else the message. */
function errorIdentity(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "number" ? `HTTP ${code}` : String(error);
}

/** One line for a log: `HTTP 403: <the API server's Status message>`, else the error's message. */
export function describeApiError(error: unknown): string {
  const { code, body } = (error ?? {}) as { code?: unknown; body?: unknown };
  if (typeof code !== "number") return error instanceof Error ? error.message : String(error);
  let message: unknown;
  try {
    message = (typeof body === "string" ? JSON.parse(body) : body as { message?: unknown })
      ?.message;
  } catch {
    message = undefined;
  }
  return typeof message === "string" ? `HTTP ${code}: ${message}` : `HTTP ${code}`;
}

/** Ref-counted single-object watches; see the module documentation. */
export class ObjectWatcher {
  readonly #opts: ObjectWatcherOptions;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #watch: Watch;
  readonly #entries = new Map<string, Entry>();

  /**
   * Creates the error.
   *
   * @param options cluster access, logger and change callback
   */
  constructor(options: ObjectWatcherOptions) {
    this.#opts = options;
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#watch = new Watch(options.kubeConfig);
  }

  /** Number of objects currently watched. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Starts (or shares) the watch of an object and resolves once its current state is known.
   * Each call must be balanced by {@link release}.
   */
  async acquire(o: WatchedObject): Promise<void> {
    const key = objectKey(o);
    let entry = this.#entries.get(key);
    if (!entry) {
      let resolveLoaded!: () => void;
      const loaded = new Promise<void>((resolve) => (resolveLoaded = resolve));
      entry = { ...o, key, refs: 0, object: undefined, loaded, stopped: false };
      this.#entries.set(key, entry);
      this.#run(entry, resolveLoaded);
    }
    entry.refs++;
    await entry.loaded;
  }

  /** Drops one use of an object; the watch stops with the last one. */
  release(o: WatchedObject): void {
    const key = objectKey(o);
    const entry = this.#entries.get(key);
    if (!entry) return;
    if (--entry.refs > 0) return;
    this.#entries.delete(key);
    this.#stopEntry(entry);
  }

  /** Current state: the object, null when it does not exist, undefined when not watched. */
  get(o: WatchedObject): Record<string, unknown> | null | undefined {
    return this.#entries.get(objectKey(o))?.object;
  }

  /**
   * The error of the last list of a watched object (e.g. the API server's 403 as an
   * `ApiException`), or undefined when the last list succeeded or the object is not watched.
   * While it is set, {@link get} holds the last state read (null if none ever was).
   */
  error(o: WatchedObject): unknown {
    return this.#entries.get(objectKey(o))?.error;
  }

  /**
   * Lists a watched object now (a consistent read from the API server) and resolves once its state
   * is stored; a change is reported as usual, a failure is kept as {@link error}. Does nothing for
   * an object that is not watched.
   */
  async refresh(o: WatchedObject): Promise<void> {
    const entry = this.#entries.get(objectKey(o));
    if (!entry || entry.stopped) return;
    try {
      await this.#list(entry);
    } catch (error) {
      this.#failed(entry, error);
    }
  }

  /** Stops every watch. */
  stop(): void {
    for (const entry of this.#entries.values()) this.#stopEntry(entry);
    this.#entries.clear();
  }

  #stopEntry(entry: Entry): void {
    entry.stopped = true;
    entry.abort?.abort();
    entry.wake?.();
  }

  /** Stores the state; reports a change (and returns true) unless it is the first load. */
  #set(entry: Entry, object: Record<string, unknown> | null): boolean {
    const before = entry.object;
    entry.object = object;
    if (before === undefined) return false;
    if ((before === null) !== (object === null) || rvOf(before) !== rvOf(object)) {
      this.#opts.onChange(entry.key);
      return true;
    }
    return false;
  }

  async #list(entry: Entry): Promise<string | undefined> {
    const fieldSelector = `metadata.name=${entry.name}`;
    let list: { metadata?: { resourceVersion?: string }; items?: unknown[] };
    if (entry.kind === "Secret") {
      list = await this.#core.listNamespacedSecret({ namespace: entry.namespace, fieldSelector });
    } else if (entry.kind === "ConfigMap") {
      list = await this.#core.listNamespacedConfigMap({
        namespace: entry.namespace,
        fieldSelector,
      });
    } else {
      list = await this.#custom.listNamespacedCustomObject({
        group: CLASS_GROUP,
        version: CLASS_VERSION,
        namespace: entry.namespace,
        plural: CLASS_PLURAL,
        fieldSelector,
      }) as typeof list;
    }
    const item = list.items?.find((i) => (i as ObjectMeta).metadata?.name === entry.name);
    const failed = entry.error !== undefined;
    entry.error = undefined;
    const reported = this.#set(entry, (item as Record<string, unknown> | undefined) ?? null);
    if (failed && !reported && !entry.stopped) this.#opts.onChange(entry.key);
    return list.metadata?.resourceVersion;
  }

  /** Keeps a list error; logs and reports it when it differs from the previous one. */
  #failed(entry: Entry, error: unknown, report = true): void {
    const changed = entry.error === undefined ||
      errorIdentity(entry.error) !== errorIdentity(error);
    entry.error = error;
    const fields = { [LOG_KEYS.error]: describeApiError(error) };
    const log = this.#opts.logger.with({ [LOG_KEYS.object]: entry.key });
    if (changed) log.warn("list failed", fields);
    else log.debug("list failed again", fields);
    if (changed && report && !entry.stopped) this.#opts.onChange(entry.key);
  }

  async #run(entry: Entry, loaded: () => void): Promise<void> {
    const log = this.#opts.logger.with({ [LOG_KEYS.object]: entry.key });
    const backoff = new Backoff({ initialMs: 200, maxMs: this.#opts.maxRetryMs ?? 10_000 });
    while (!entry.stopped) {
      let rv: string | undefined;
      try {
        rv = await this.#list(entry);
        loaded();
        backoff.reset();
      } catch (error) {
        // A first load that fails leaves the object unknown; publishing reports it.
        const first = entry.object === undefined;
        if (first) entry.object = null;
        this.#failed(entry, error, !first);
        if (first) loaded();
        await this.#sleep(entry, backoff.next());
        continue;
      }
      if (entry.stopped) break;
      await new Promise<void>((resolve) => {
        let finished = false;
        const finish = () => {
          if (!finished) {
            finished = true;
            resolve();
          }
        };
        entry.wake = finish;
        this.#watch.watch(
          pathOf(entry),
          {
            fieldSelector: `metadata.name=${entry.name}`,
            resourceVersion: rv,
            allowWatchBookmarks: true,
            timeoutSeconds: this.#opts.watchTimeoutSeconds ?? 300,
          },
          (phase, obj) => {
            if (phase === "ADDED" || phase === "MODIFIED") this.#set(entry, obj);
            else if (phase === "DELETED") this.#set(entry, null);
            else if (phase === "ERROR") finish();
          },
          (err) => {
            if (err && !entry.stopped && (err as Error).name !== "AbortError") {
              log.debug("watch ended", { [LOG_KEYS.error]: String(err) });
            }
            finish();
          },
        ).then((abort) => {
          entry.abort = abort;
          if (entry.stopped) abort.abort();
        }, (err) => {
          log.warn("watch failed", { [LOG_KEYS.error]: String(err) });
          finish();
        });
      });
      if (!entry.stopped) await this.#sleep(entry, 100);
    }
  }

  #sleep(entry: Entry, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      entry.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
