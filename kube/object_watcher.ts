/**
 * Ref-counted watches of single named objects (Secrets, ConfigMaps, CAProviderClasses,
 * ClusterTrustBundles, cert-manager Issuers and ClusterIssuers) and of selections of
 * ClusterTrustBundles. Each object that a published volume uses is listed and watched with
 * `fieldSelector=metadata.name=<name>` in its namespace (none for a cluster-scoped kind), shared
 * by every volume that uses it, and dropped when the last one goes: no cluster-wide or
 * namespace-wide Secret watch. A selection (a
 * {@link WatchSelector}: e.g. `spec.signerName=<signer>` and a label selector) is listed and
 * watched with its selectors, and its state is every object they match. After a watch
 * ends (timeout, 410 Gone, network error) the object is listed again and the watch resumes from
 * the list's resourceVersion. A list that fails (403, network) is retried with backoff; its error
 * is kept ({@link ObjectWatcher.error}) until a list succeeds, and both changes are reported.
 *
 * @module
 */

import {
  CLASS_GROUP,
  CLASS_PLURAL,
  CLASS_VERSION,
  CLUSTER_ISSUER_PLURAL,
  ISSUER_GROUP,
  ISSUER_PLURAL,
  ISSUER_VERSION,
  TRUST_BUNDLE_GROUP,
  TRUST_BUNDLE_PLURAL,
  TRUST_BUNDLE_VERSION,
} from "../api/mod.ts";
import { Backoff, LOG_KEYS, type Logger } from "../cli/mod.ts";
import { KubeApiError, statusMessageOf } from "./api_error.ts";
import type { KubeClient } from "./client.ts";

/** Kinds the driver watches. */
export type WatchedKind =
  | "Secret"
  | "ConfigMap"
  | "CAProviderClass"
  | "ClusterTrustBundle"
  | "Issuer"
  | "ClusterIssuer";

/** The selectors of a watched selection (at least one of them). */
export interface WatchSelector {
  /** A field selector, e.g. `spec.signerName=example.com/signer`. */
  fieldSelector?: string;
  /** A label selector, e.g. `team=a,tier in (x,y)`; `""` matches everything. */
  labelSelector?: string;
}

/** Identity of a watched object, or of a selection of objects. */
export interface WatchedObject {
  /** Kind. */
  kind: WatchedKind;
  /** Namespace; `""` for a cluster-scoped kind (ClusterTrustBundle, ClusterIssuer). */
  namespace: string;
  /** Name; `""` for a selection. */
  name: string;
  /**
   * Watch every object these selectors match instead of the one named: {@link ObjectWatcher.get}
   * gives a `List` object whose `items` are the matches, in name order.
   */
  selector?: WatchSelector;
}

/**
 * The key used for a watched object: `Kind/namespace/name`; a selection's ends in its selectors
 * (`ClusterTrustBundle//?fieldSelector=...&labelSelector=...`).
 */
export function objectKey(o: WatchedObject): string {
  const base = `${o.kind}/${o.namespace}/${o.name}`;
  if (!o.selector) return base;
  const query = new URLSearchParams();
  if (o.selector.fieldSelector !== undefined) {
    query.set("fieldSelector", o.selector.fieldSelector);
  }
  if (o.selector.labelSelector !== undefined) {
    query.set("labelSelector", o.selector.labelSelector);
  }
  return `${base}?${query}`;
}

interface Entry extends WatchedObject {
  key: string;
  refs: number;
  /** undefined: not loaded yet; null: does not exist (never for a loaded selection). */
  object: Record<string, unknown> | null | undefined;
  /** What a change is detected by: the resourceVersion(s) of the state stored. */
  version?: string;
  /** A selection's matches by name. */
  items?: Map<string, Record<string, unknown>>;
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
  client: KubeClient;
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
    case "ClusterTrustBundle":
      return `/apis/${TRUST_BUNDLE_GROUP}/${TRUST_BUNDLE_VERSION}/${TRUST_BUNDLE_PLURAL}`;
    case "Issuer":
      return `/apis/${ISSUER_GROUP}/${ISSUER_VERSION}/namespaces/${o.namespace}/${ISSUER_PLURAL}`;
    case "ClusterIssuer":
      return `/apis/${ISSUER_GROUP}/${ISSUER_VERSION}/${CLUSTER_ISSUER_PLURAL}`;
  }
}

/** The list and watch query of an entry: its name, or its selection's selectors. */
function selectorsOf(o: WatchedObject): WatchSelector {
  return o.selector ?? { fieldSelector: `metadata.name=${o.name}` };
}

function rvOf(o: unknown): string | undefined {
  return (o as ObjectMeta | null | undefined)?.metadata?.resourceVersion;
}

function nameOf(o: unknown): string {
  return (o as ObjectMeta | null | undefined)?.metadata?.name ?? "";
}

/** What identifies an error for change detection: the HTTP status code, else the message. */
function errorIdentity(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "number" ? `HTTP ${code}` : String(error);
}

/** One line for a log: `HTTP 403: <the API server's Status message>`, else the error's message. */
export function describeApiError(error: unknown): string {
  if (error instanceof KubeApiError) {
    return error.statusMessage === ""
      ? `HTTP ${error.code}`
      : `HTTP ${error.code}: ${error.statusMessage}`;
  }
  const { code, body } = (error ?? {}) as { code?: unknown; body?: unknown };
  if (typeof code !== "number") return error instanceof Error ? error.message : String(error);
  const message = statusMessageOf(body);
  return message !== undefined ? `HTTP ${code}: ${message}` : `HTTP ${code}`;
}

/** Ref-counted single-object watches; see the module documentation. */
export class ObjectWatcher {
  readonly #opts: ObjectWatcherOptions;
  readonly #client: KubeClient;
  readonly #entries = new Map<string, Entry>();

  /**
   * Creates the watcher; nothing is read until {@link acquire}.
   *
   * @param options cluster access, logger and change callback
   */
  constructor(options: ObjectWatcherOptions) {
    this.#opts = options;
    this.#client = options.client;
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

  /**
   * Current state: the object, null when it does not exist, undefined when not watched. For a
   * selection: a `List` object whose `items` are the matches in name order (null only when no
   * list ever succeeded).
   */
  get(o: WatchedObject): Record<string, unknown> | null | undefined {
    return this.#entries.get(objectKey(o))?.object;
  }

  /**
   * The error of the last list of a watched object (e.g. the API server's 403 as a
   * `KubeApiError`), or undefined when the last list succeeded or the object is not watched.
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

  /** Stores an object's state; reports a change (and returns true) unless it is the first load. */
  #set(entry: Entry, object: Record<string, unknown> | null): boolean {
    return this.#store(entry, object, object === null ? "absent" : `rv ${rvOf(object)}`);
  }

  /** Stores a selection's state from {@link Entry.items}; see {@link ObjectWatcher.#set}. */
  #setItems(entry: Entry): boolean {
    const items = [...entry.items!.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
      .map(([, item]) => item);
    const version = items.map((item) => `${nameOf(item)}@${rvOf(item)}`).join(",");
    return this.#store(entry, { apiVersion: "v1", kind: "List", items }, version);
  }

  #store(entry: Entry, object: Record<string, unknown> | null, version: string): boolean {
    const before = entry.object;
    const beforeVersion = entry.version;
    entry.object = object;
    entry.version = version;
    if (before === undefined || beforeVersion === version) return false;
    this.#opts.onChange(entry.key);
    return true;
  }

  async #list(entry: Entry): Promise<string | undefined> {
    const { fieldSelector, labelSelector } = selectorsOf(entry);
    const list = await this.#client.list(pathOf(entry), { fieldSelector, labelSelector });
    const items = (list.items ?? []) as Record<string, unknown>[];
    const failed = entry.error !== undefined;
    entry.error = undefined;
    let reported: boolean;
    if (entry.selector) {
      entry.items = new Map(items.map((item) => [nameOf(item), item]));
      reported = this.#setItems(entry);
    } else {
      reported = this.#set(entry, items.find((item) => nameOf(item) === entry.name) ?? null);
    }
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
        const abort = new AbortController();
        entry.abort = abort;
        if (entry.stopped) abort.abort();
        this.#client.watch(
          pathOf(entry),
          {
            ...selectorsOf(entry),
            resourceVersion: rv,
            allowWatchBookmarks: true,
            timeoutSeconds: this.#opts.watchTimeoutSeconds ?? 300,
            signal: abort.signal,
          },
          (phase, obj) => {
            if (phase === "ERROR") {
              abort.abort();
              finish();
            } else if (entry.selector && (phase === "ADDED" || phase === "MODIFIED")) {
              entry.items!.set(nameOf(obj), obj);
              this.#setItems(entry);
            } else if (entry.selector && phase === "DELETED") {
              entry.items!.delete(nameOf(obj));
              this.#setItems(entry);
            } else if (phase === "ADDED" || phase === "MODIFIED") this.#set(entry, obj);
            else if (phase === "DELETED") this.#set(entry, null);
          },
        ).then(finish, (err) => {
          if (entry.stopped || (err as Error).name === "AbortError") {
            // Stopped on purpose.
          } else if (err instanceof KubeApiError) {
            log.warn("watch failed", { [LOG_KEYS.error]: describeApiError(err) });
          } else {
            log.debug("watch ended", { [LOG_KEYS.error]: String(err) });
          }
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
