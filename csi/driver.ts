/**
 * The node driver's core: publishes ephemeral trust-store volumes from CAProviderClasses, keeps
 * every published volume current by watching exactly the objects it references, persists volume
 * records so a restarted driver resumes, and never fails a republish (kubernetes#121271).
 *
 * @module
 */

import { status } from "@grpc/grpc-js";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { statfs } from "node:fs/promises";
import {
  AtomicWriter,
  type BaseRoots,
  buildTrustSet,
  type OsFamily,
  parseOsFamily,
  type Payload,
  type PemSource,
  renderTrustStore,
} from "../trust_store/mod.ts";
import {
  type ObjectName,
  parseClassRefs,
  readRefText,
  refObjectName,
  type SourceRef,
} from "../api/mod.ts";
import { SourceError } from "../api/mod.ts";
import { CsiError, toCsiError } from "./errors.ts";
import type { Logger } from "../cli/mod.ts";
import { Registry } from "../prometheus/mod.ts";
import { isMountPoint, mountTmpfs, unmount } from "./mount.ts";
import { describeApiError, objectKey, ObjectWatcher, type WatchedObject } from "../kube/mod.ts";
import type {
  NodeGetVolumeStatsRequest,
  NodePublishVolumeRequest,
  NodeUnpublishVolumeRequest,
} from "./proto.ts";
import { StateStore, type VolumeRecord } from "./state.ts";
import { type PodRef, validatePublish, validateStats, validateUnpublish } from "./validation.ts";

/** Name of the AtomicWriter's current-data link inside a volume. */
export const DATA_LINK = "..data";

/** Options for {@link NodeDriver}. */
export interface NodeDriverOptions {
  /** CSI driver name. */
  driverName: string;
  /** Node id reported by NodeGetInfo. */
  nodeId: string;
  /** Directory for volume records. */
  stateDir: string;
  /** Write into the target directory instead of mounting a tmpfs there. */
  plainDir: boolean;
  /** tmpfs size, e.g. `"8Mi"`. */
  tmpfsSize: string;
  /** Namespaces (besides the pod's own) that classes and refs may point into. */
  allowedRefNamespaces: readonly string[];
  /** Cluster access. */
  kubeConfig: KubeConfig;
  /** Structured logger. */
  logger: Logger;
  /** Metrics registry (one is created when omitted). */
  metrics?: Registry;
  /** Public roots added under the referenced CAs (default: none). */
  baseRoots?: BaseRoots;
  /** How many volumes are re-rendered at once after a change (default 32). */
  renderConcurrency?: number;
}

interface Volume {
  record: VolumeRecord;
  family: OsFamily;
  writer: AtomicWriter;
  deps: WatchedObject[];
  /** Hash of the sources of the store currently on disk. */
  storeHash?: string;
  lastError?: string;
  queue: Promise<void>;
  pending: boolean;
  closed: boolean;
}

/** A volume's sources could not be turned into a store. */
export class RenderError extends Error {
  /** @param message what failed, naming the object and key */
  constructor(message: string, readonly code: status = status.FAILED_PRECONDITION) {
    super(message);
    this.name = "RenderError";
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** The CSI node driver; see the module documentation. */
export class NodeDriver {
  /** Metrics registry. */
  readonly metrics: Registry;
  readonly #opts: NodeDriverOptions;
  readonly #log: Logger;
  readonly #state: StateStore;
  readonly #watcher: ObjectWatcher;
  readonly #core: CoreV1Api;
  readonly #volumes = new Map<string, Volume>();
  readonly #byKey = new Map<string, Set<Volume>>();
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #payloads = new Map<string, Promise<Payload>>();
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  /** @param options see {@link NodeDriverOptions} */
  constructor(options: NodeDriverOptions) {
    this.#opts = options;
    this.#log = options.logger;
    this.#state = new StateStore(options.stateDir);
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.metrics = options.metrics ?? new Registry();
    const m = this.metrics;
    m.define(
      "cacerts_csi_volumes",
      "gauge",
      "Volumes currently published.",
      { collect: () => this.#volumes.size },
    );
    m.define("cacerts_csi_watched_objects", "gauge", "Objects watched.", {
      collect: () => this.#watcher.size,
    });
    m.define("cacerts_csi_publish_total", "counter", "NodePublishVolume calls by result.");
    m.define("cacerts_csi_unpublish_total", "counter", "NodeUnpublishVolume calls by result.");
    m.define("cacerts_csi_store_writes_total", "counter", "Trust stores swapped in.");
    m.define(
      "cacerts_csi_update_failures_total",
      "counter",
      "Updates rejected (last good store kept) by reason.",
    );
    m.define("cacerts_csi_republish_errors_total", "counter", "Republish problems masked.");
    this.#watcher = new ObjectWatcher({
      kubeConfig: options.kubeConfig,
      logger: options.logger,
      onChange: (key) => this.#onChange(key),
    });
  }

  /** Number of published volumes. */
  get volumeCount(): number {
    return this.#volumes.size;
  }

  /** Loads the volume records and resumes every volume whose target still holds our store. */
  async restore(): Promise<{ resumed: number; forgotten: number }> {
    const { records, errors } = await this.#state.loadAll();
    for (const e of errors) {
      this.#log.warn("ignoring unreadable volume record", { error: e.message });
    }
    let resumed = 0;
    let forgotten = 0;
    for (const record of records) {
      if (!(await exists(join(record.targetPath, DATA_LINK)))) {
        this.#log.info("forgetting volume whose target is gone", {
          volumeId: record.volumeId,
          targetPath: record.targetPath,
        });
        await this.#state.remove(record.volumeId);
        forgotten++;
        continue;
      }
      let family: OsFamily;
      try {
        family = parseOsFamily(record.os);
      } catch {
        await this.#state.remove(record.volumeId);
        forgotten++;
        continue;
      }
      const volume = this.#newVolume(record, family);
      volume.storeHash = "restored";
      this.#volumes.set(record.volumeId, volume);
      this.#schedule(volume, "restart");
      resumed++;
    }
    this.#log.info("volume records restored", { resumed, forgotten });
    return { resumed, forgotten };
  }

  /** Waits until every queued re-render has finished (for tests and shutdown). */
  async idle(): Promise<void> {
    while (true) {
      const queues = [...this.#volumes.values()].map((v) => v.queue);
      await Promise.all(queues);
      if ([...this.#volumes.values()].every((v) => !v.pending)) return;
    }
  }

  /** Stops every watch (volumes and their stores stay as they are). */
  async stop(): Promise<void> {
    this.#watcher.stop();
    for (const v of this.#volumes.values()) v.closed = true;
    await Promise.allSettled([...this.#volumes.values()].map((v) => v.queue));
  }

  #lock<T>(volumeId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(volumeId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.#locks.set(volumeId, next);
    next.finally(() => {
      if (this.#locks.get(volumeId) === next) this.#locks.delete(volumeId);
    }).catch(() => {});
    return next;
  }

  #newVolume(record: VolumeRecord, family: OsFamily): Volume {
    return {
      record,
      family,
      // No fsync: the store is rebuilt from the cluster on every publish and restart, so surviving
      // a power loss buys nothing, while fsync costs milliseconds per file on a plain directory.
      writer: new AtomicWriter(record.targetPath, { fsync: false }),
      deps: [],
      queue: Promise.resolve(),
      pending: false,
      closed: false,
    };
  }

  /** NodePublishVolume: first publish renders or fails; a republish never fails. */
  publish(req: NodePublishVolumeRequest): Promise<void> {
    const spec = validatePublish(req, { parseOs: parseOsFamily });
    return this.#lock(spec.volumeId, async () => {
      const existing = this.#volumes.get(spec.volumeId);
      if (existing) {
        if (existing.record.targetPath !== spec.targetPath) {
          throw new CsiError(
            status.ALREADY_EXISTS,
            `volume ${spec.volumeId} is already published at ${existing.record.targetPath}, not ` +
              `${spec.targetPath} (pod ${spec.pod.namespace}/${spec.pod.name})`,
          );
        }
        await this.#republish(existing);
        this.metrics.inc("cacerts_csi_publish_total", { result: "republish" });
        return;
      }
      try {
        await this.#firstPublish(spec.volumeId, spec.targetPath, spec.pod, spec.os, spec.classes);
        this.metrics.inc("cacerts_csi_publish_total", { result: "ok" });
      } catch (error) {
        this.metrics.inc("cacerts_csi_publish_total", { result: "error" });
        throw error;
      }
    });
  }

  async #republish(volume: Volume): Promise<void> {
    // Never an error: kubelet deletes the mount dir on a failed republish (kubernetes#121271).
    try {
      if (!(await exists(join(volume.record.targetPath, DATA_LINK)))) {
        volume.storeHash = undefined;
        this.#schedule(volume, "republish found no store");
        await volume.queue;
      } else if (volume.lastError !== undefined) {
        // The last update failed (e.g. ENOSPC on a full tmpfs) and no watch event will come
        // again for content already in the cluster: kubelet's periodic republish retries it.
        this.#schedule(volume, "republish retries a failed update");
        await volume.queue;
      }
    } catch (error) {
      this.metrics.inc("cacerts_csi_republish_errors_total");
      this.#log.warn("republish problem masked", {
        volumeId: volume.record.volumeId,
        error: errorText(error),
      });
    }
  }

  async #firstPublish(
    volumeId: string,
    targetPath: string,
    pod: PodRef,
    family: OsFamily,
    classes: ObjectName[],
  ): Promise<void> {
    const who = `pod ${pod.namespace}/${pod.name}`;
    await Deno.mkdir(targetPath, { recursive: true, mode: 0o750 });
    let mounted = false;
    if (!this.#opts.plainDir && !(await isMountPoint(targetPath))) {
      try {
        await mountTmpfs(targetPath, this.#opts.tmpfsSize);
      } catch (error) {
        throw new CsiError(status.INTERNAL, `${errorText(error)} (${who})`);
      }
      mounted = true;
    }
    const record: VolumeRecord = {
      version: 1,
      volumeId,
      targetPath,
      pod,
      os: family,
      classes,
      mounted: mounted || (!this.#opts.plainDir),
    };
    const volume = this.#newVolume(record, family);
    try {
      await this.#render(volume);
      await this.#state.save(record);
    } catch (error) {
      this.#release(volume);
      await this.#cleanTarget(targetPath, mounted).catch(() => {});
      throw toCsiError(error, ` (${who})`);
    }
    this.#volumes.set(volumeId, volume);
    this.#log.info("volume published", {
      volumeId,
      targetPath,
      pod: `${pod.namespace}/${pod.name}`,
      os: family,
      classes: classes.map((c) => `${c.namespace}/${c.name}`),
    });
  }

  /** NodeUnpublishVolume: forget, unmount and empty the target (idempotent). */
  unpublish(req: NodeUnpublishVolumeRequest): Promise<void> {
    const { volumeId, targetPath } = validateUnpublish(req);
    return this.#lock(volumeId, async () => {
      const volume = this.#volumes.get(volumeId);
      if (volume) {
        volume.closed = true;
        this.#volumes.delete(volumeId);
        // A re-render in flight takes new watch references; release after it settles.
        await volume.queue.catch(() => {});
        this.#release(volume);
      }
      const ours = volume !== undefined || (await exists(join(targetPath, DATA_LINK)));
      if (ours && (await exists(targetPath))) await this.#cleanTarget(targetPath, true);
      await this.#state.remove(volumeId);
      this.metrics.inc("cacerts_csi_unpublish_total", { result: "ok" });
      this.#log.info("volume unpublished", { volumeId, targetPath, known: volume !== undefined });
    });
  }

  async #cleanTarget(targetPath: string, mayBeMounted: boolean): Promise<void> {
    if (mayBeMounted && (await isMountPoint(targetPath))) await unmount(targetPath);
    // Leave the directory itself: kubelet removes it, non-recursively.
    for await (const entry of Deno.readDir(targetPath)) {
      await Deno.remove(join(targetPath, entry.name), { recursive: true });
    }
  }

  /** NodeGetVolumeStats with a volume condition. */
  async stats(req: NodeGetVolumeStatsRequest): Promise<{
    usage: { available: number; total: number; used: number; unit: string }[];
    volumeCondition: { abnormal: boolean; message: string };
  }> {
    const { volumeId, volumePath } = validateStats(req);
    const volume = this.#volumes.get(volumeId);
    if (!volume) {
      throw new CsiError(status.NOT_FOUND, `volume ${volumeId} is not published on this node`);
    }
    if (volume.record.targetPath !== volumePath) {
      throw new CsiError(
        status.NOT_FOUND,
        `volume ${volumeId} is published at ${volume.record.targetPath}, not ${volumePath}`,
      );
    }
    if (!(await exists(volumePath))) {
      throw new CsiError(status.NOT_FOUND, `volume path ${volumePath} does not exist`);
    }
    const usage = [];
    try {
      const fs = await statfs(volumePath);
      const total = Number(fs.blocks) * Number(fs.bsize);
      const available = Number(fs.bavail) * Number(fs.bsize);
      usage.push({
        total,
        available,
        used: total - Number(fs.bfree) * Number(fs.bsize),
        unit: "BYTES",
      });
      const files = Number(fs.files);
      usage.push({
        total: files,
        available: Number(fs.ffree),
        used: files - Number(fs.ffree),
        unit: "INODES",
      });
    } catch (error) {
      this.#log.debug("statfs failed", { volumePath, error: errorText(error) });
    }
    const hasStore = await exists(join(volumePath, DATA_LINK));
    const abnormal = !hasStore || volume.lastError !== undefined;
    const message = !hasStore
      ? `trust store missing at ${volumePath}`
      : volume.lastError
      ? `serving the last good trust store; latest update failed: ${volume.lastError}`
      : "trust store current";
    return { usage, volumeCondition: { abnormal, message } };
  }

  #onChange(key: string): void {
    const volumes = this.#byKey.get(key);
    if (!volumes) return;
    for (const volume of volumes) this.#schedule(volume, `changed ${key}`);
  }

  #schedule(volume: Volume, reason: string): void {
    if (volume.pending || volume.closed) return;
    volume.pending = true;
    volume.queue = volume.queue.then(async () => {
      await this.#slot();
      try {
        volume.pending = false;
        if (volume.closed) return;
        await this.#render(volume);
        if (volume.lastError !== undefined) {
          this.#log.info("trust store recovered", { volumeId: volume.record.volumeId });
          volume.lastError = undefined;
        }
      } catch (error) {
        this.#updateFailed(volume, reason, error);
      } finally {
        this.#unslot();
      }
    });
  }

  async #slot(): Promise<void> {
    if (this.#active < (this.#opts.renderConcurrency ?? 32)) {
      this.#active++;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #unslot(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }

  #updateFailed(volume: Volume, reason: string, error: unknown): void {
    const message = errorText(error);
    const { pod, volumeId } = volume.record;
    const kind = error instanceof SourceError || error instanceof RenderError ? "source" : "render";
    this.metrics.inc("cacerts_csi_update_failures_total", { reason: kind });
    this.#log.warn("update rejected, keeping the last good trust store", {
      volumeId,
      pod: `${pod.namespace}/${pod.name}`,
      trigger: reason,
      error: message,
    });
    const repeated = volume.lastError === message;
    volume.lastError = message;
    if (!repeated) this.#emitEvent(pod, message);
  }

  #emitEvent(pod: PodRef, message: string): void {
    const now = new Date();
    this.#core.createNamespacedEvent({
      namespace: pod.namespace,
      body: {
        metadata: { generateName: `${pod.name}.`, namespace: pod.namespace },
        involvedObject: {
          apiVersion: "v1",
          kind: "Pod",
          namespace: pod.namespace,
          name: pod.name,
          uid: pod.uid || undefined,
        },
        reason: "TrustStoreUpdateFailed",
        message: `Keeping the last good trust store: ${message}`.slice(0, 1000),
        type: "Warning",
        source: { component: this.#opts.driverName, host: this.#opts.nodeId },
        reportingComponent: this.#opts.driverName,
        reportingInstance: this.#opts.nodeId,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    }).catch((error) => {
      this.#log.warn("event not recorded", {
        pod: `${pod.namespace}/${pod.name}`,
        error: errorText(error),
      });
    });
  }

  #allowed(namespace: string, pod: PodRef): boolean {
    return namespace === pod.namespace || this.#opts.allowedRefNamespaces.includes(namespace) ||
      this.#opts.allowedRefNamespaces.includes("*");
  }

  async #use(deps: WatchedObject[], o: WatchedObject): Promise<Record<string, unknown> | null> {
    deps.push(o);
    await this.#watcher.acquire(o);
    return this.#watcher.get(o) ?? null;
  }

  /** Resolves the volume's classes into PEM sources; records the objects it read in `deps`. */
  async #resolve(record: VolumeRecord, deps: WatchedObject[]): Promise<PemSource[]> {
    const { pod } = record;
    const sources: PemSource[] = [];
    for (const cls of record.classes) {
      const label = `CAProviderClass ${cls.namespace}/${cls.name}`;
      if (!this.#allowed(cls.namespace, pod)) {
        throw new SourceError(
          `${label} is in another namespace than the pod and "${cls.namespace}" is not in ` +
            `--allowed-ref-namespaces`,
          { reason: "NotAllowed" },
        );
      }
      const object = await this.#use(deps, { kind: "CAProviderClass", ...cls });
      this.#unreadable({ kind: "CAProviderClass", ...cls }, object, label);
      if (!object) {
        throw new SourceError(`${label} not found`, { reason: "ClassNotFound" });
      }
      for (const ref of parseClassRefs(object, cls)) {
        if (!this.#allowed(ref.namespace, pod)) {
          throw new SourceError(
            `${label} refers to ${ref.kind} ${ref.namespace}/${ref.name} in another namespace and ` +
              `"${ref.namespace}" is not in --allowed-ref-namespaces`,
            { reason: "NotAllowed" },
          );
        }
        const watched = { kind: ref.kind, namespace: ref.namespace, name: ref.name };
        const source = await this.#use(deps, watched);
        this.#unreadable(watched, source, `${refObjectName(ref)} (from ${label})`);
        const { key, text } = readRefText(ref, source, label);
        sources.push({ name: this.#sourceName(ref, key), text });
      }
    }
    return sources;
  }

  /** An object never read because its list failed is unreadable, not missing: say so. */
  #unreadable(o: WatchedObject, object: Record<string, unknown> | null, what: string): void {
    const error = this.#watcher.error(o);
    if (object !== null || error === undefined) return;
    const forbidden = (error as { code?: unknown }).code === 403;
    throw new SourceError(
      `cannot read ${what}: ${describeApiError(error)}` +
        (forbidden ? ` (grant the driver's ServiceAccount get, list and watch on it)` : ""),
      { reason: forbidden ? "Forbidden" : "SourceUnreadable", cause: error },
    );
  }

  #sourceName(ref: SourceRef, key: string): string {
    return `${refObjectName(ref)} key ${key}`;
  }

  #release(volume: Volume): void {
    for (const dep of volume.deps) {
      this.#byKey.get(objectKey(dep))?.delete(volume);
      if (this.#byKey.get(objectKey(dep))?.size === 0) this.#byKey.delete(objectKey(dep));
      this.#watcher.release(dep);
    }
    volume.deps = [];
  }

  async #render(volume: Volume): Promise<void> {
    const deps: WatchedObject[] = [];
    let sources: PemSource[];
    try {
      sources = await this.#resolve(volume.record, deps);
    } finally {
      // Keep following whatever was read, even when it was unusable, so a fix is picked up.
      const old = volume.deps;
      volume.deps = deps;
      for (const dep of deps) {
        const key = objectKey(dep);
        let set = this.#byKey.get(key);
        if (!set) this.#byKey.set(key, set = new Set());
        set.add(volume);
      }
      const keep = new Set(deps.map(objectKey));
      for (const dep of old) {
        const key = objectKey(dep);
        if (!keep.has(key)) this.#byKey.get(key)?.delete(volume);
        this.#watcher.release(dep);
      }
    }
    const hash = this.#hash(volume.family, sources);
    if (hash === volume.storeHash) return;
    const payload = await this.#payload(hash, volume.family, sources);
    if (volume.closed) return;
    const { changed } = await volume.writer.write(payload);
    volume.storeHash = hash;
    if (changed) {
      this.metrics.inc("cacerts_csi_store_writes_total");
      this.#log.debug("trust store written", {
        volumeId: volume.record.volumeId,
        targetPath: volume.record.targetPath,
      });
    }
  }

  #hash(family: string, sources: PemSource[]): string {
    const h = createHash("sha256").update(family);
    for (const s of sources) h.update("\0").update(s.name).update("\0").update(s.text);
    return h.digest("hex");
  }

  /** Builds and renders a store, shared by every volume with the same family and sources. */
  #payload(hash: string, family: OsFamily, sources: PemSource[]): Promise<Payload> {
    let p = this.#payloads.get(hash);
    if (!p) {
      p = (async () => {
        try {
          const set = await buildTrustSet(sources, { base: this.#opts.baseRoots });
          return await renderTrustStore(family, set);
        } catch (error) {
          throw new RenderError(errorText(error));
        }
      })();
      this.#payloads.set(hash, p);
      p.catch(() => this.#payloads.delete(hash));
      while (this.#payloads.size > 32) {
        this.#payloads.delete(this.#payloads.keys().next().value as string);
      }
    }
    return p;
  }
}
