/**
 * The node server's orchestration: NodePublishVolume (first publish renders or fails; a republish
 * never fails, kubernetes#121271), NodeUnpublishVolume, NodeGetVolumeStats, restore after a
 * restart, and the re-render of every volume that read an object when that object changes. A bad
 * update keeps the last good store, counts in `cacerts_csi_update_failures_total` and records one
 * Warning Event per distinct failure.
 *
 * A store written without some certificates its sources hold (the trust set's `dropped`: expired,
 * not yet valid, not a CA, an intermediate, unloadable by OpenSSL 3) is reported once per volume
 * and distinct certificate: a `certificate dropped from the trust store` warn line (subject,
 * sha256, source, reason), one count in `cacerts_csi_certificates_dropped_total{reason}`, and one
 * `TrustStoreCertificateDropped` Warning Event on the pod per distinct set of dropped
 * certificates. A re-render that drops the same certificates reports nothing again. A dropped base
 * root is logged and counted once per driver process, never in a pod's Event, so an expired root
 * in the image's bundle does not repeat on every volume. (A driver restart reports again.)
 *
 * A first publish mounts the volume's tmpfs with the SELinux context kubelet passes in its mount
 * flags (`seLinuxMount: true` on the CSIDriver) or, on an SELinux node, with one every container
 * may read (`selinux.ts`); the options are kept in the volume's record. Whether the node has
 * SELinux is decided once, when the server is built, from the kernel's `/proc/filesystems`; the
 * SELinux file system is then mounted in the driver's `/sys/fs/selinux` if it is not, so `mount`
 * keeps the context.
 *
 * Every collaborator is passed in ({@link NodeServerOptions}): the object source (API reads and
 * watches), the Event recorder, the mounter and the state store; `driver.ts` wires the real ones.
 * The store files themselves are written to the real file system (AtomicWriter), which a test
 * points at a temporary directory.
 *
 * @module
 */

import { status } from "@grpc/grpc-js";
import { join } from "node:path";
import { statfs } from "node:fs/promises";
import {
  AtomicWriter,
  type BaseRoots,
  changedTmpfsBytes,
  type DroppedCertificate,
  type OsFamily,
  parseOsFamily,
  type Payload,
  payloadTmpfsBytes,
  type PemSource,
  swapPeakBytes,
  TMPFS_SIZE_STEP_BYTES,
  tmpfsSizeFor,
} from "../trust_store/mod.ts";
import { type ObjectName, SourceError } from "../api/mod.ts";
import type { WatchedObject } from "../kube/mod.ts";
import { LOG_KEYS, type Logger, Semaphore } from "../cli/mod.ts";
import { Registry } from "../prometheus/mod.ts";
import { CsiError, StoreTooLargeError, toCsiError } from "./errors.ts";
import { KeyedLock } from "./concurrency.ts";
import { DependencyIndex } from "./dependency_index.ts";
import {
  CERTIFICATE_DROPPED_REASON,
  type EventRecorder,
  SOURCE_FORBIDDEN_REASON,
  UPDATE_FAILED_REASON,
} from "./events.ts";
import {
  CERTIFICATES_DROPPED,
  defineNodeMetrics,
  PUBLISH_TOTAL,
  REPUBLISH_ERRORS,
  STORE_WRITES,
  UNPUBLISH_TOTAL,
  UPDATE_FAILURES,
} from "./metrics.ts";
import { type Mounter, parseSize } from "./mount.ts";
import { PayloadCache, RenderError, storeHash } from "./payload_cache.ts";
import type {
  NodeGetVolumeStatsRequest,
  NodePublishVolumeRequest,
  NodeUnpublishVolumeRequest,
} from "./proto.ts";
import { type ObjectSource, SourceResolver } from "./resolver.ts";
import { prepareSelinux, tmpfsMountOptions } from "./selinux.ts";
import type { VolumeRecord, VolumeStateStore } from "./state.ts";
import { type PodRef, validatePublish, validateStats, validateUnpublish } from "./validation.ts";

/** Name of the AtomicWriter's current-data link inside a volume. */
export const DATA_LINK = "..data";

/** Volumes whose last refused first publish is remembered, so its Event is not repeated. */
const MAX_REFUSED = 1024;

/** Options for {@link NodeServer}: settings and collaborators. */
export interface NodeServerOptions {
  /** API reads and watches; its changes are fed to {@link NodeServer.objectChanged}. */
  objects: ObjectSource;
  /** Where Warning Events go. */
  events: EventRecorder;
  /** tmpfs mounts. */
  mounter: Mounter;
  /** Volume records. */
  state: VolumeStateStore;
  /** Structured logger. */
  logger: Logger;
  /** Write into the target directory instead of mounting a tmpfs there. */
  plainDir: boolean;
  /**
   * The cap on each volume's tmpfs, e.g. `"8Mi"` (`--tmpfs-size`). A tmpfs is mounted at twice
   * its store plus 64 KiB (room for a next generation of the same size) or the cap if smaller,
   * and grown in place up to the cap when a swap needs more; a store that cannot be swapped in
   * within the cap (the store on disk plus the new store's changed files) is refused.
   */
  tmpfsSize: string;
  /** Namespaces (besides the pod's own) that classes and refs may point into. */
  allowedRefNamespaces: readonly string[];
  /**
   * cert-manager's cluster resource namespace, where a ClusterIssuer's Secret is read
   * (`--cluster-resource-namespace`; default `cert-manager`).
   */
  clusterResourceNamespace?: string;
  /** Metrics registry (one is created when omitted). */
  metrics?: Registry;
  /** Public roots added under the referenced CAs (default: none). */
  baseRoots?: BaseRoots;
  /** How many volumes are re-rendered at once after a change (default 32). */
  renderConcurrency?: number;
  /**
   * Whether the node has SELinux enabled; called once, when the server is built (first publishes
   * and {@link NodeServer.restore} wait for its answer). When it has, a tmpfs mounted without
   * kubelet's `context=` mount flag gets the default
   * `context="system_u:object_r:container_file_t:s0"` (see `selinux.ts`). Default: `false` with
   * `plainDir`, else `selinux.ts`'s `prepareSelinux`: `/proc/filesystems` lists `selinuxfs` or
   * `/sys/fs/selinux/enforce` exists, with selinuxfs mounted at `/sys/fs/selinux` through the
   * mounter's `mountSelinuxfs` when the kernel has SELinux and nothing is mounted there.
   */
  selinuxEnabled?: () => boolean | Promise<boolean>;
}

/** Result of {@link NodeServer.stats}. */
export interface VolumeStats {
  /** Bytes and inodes of the file system at the target (empty when statfs failed). */
  usage: { available: number; total: number; used: number; unit: string }[];
  /** Abnormal when the store is missing or the latest update failed. */
  volumeCondition: { abnormal: boolean; message: string };
}

/** A rendered store about to be written. */
interface NextStore {
  hash: string;
  payload: Payload;
  /** {@link payloadTmpfsBytes} of the payload. */
  bytes: number;
  /** {@link changedTmpfsBytes} against the store on disk. */
  added: number;
  /** Certificates the sources (and base roots) held that the payload leaves out. */
  dropped: readonly DroppedCertificate[];
}

interface Volume {
  record: VolumeRecord;
  family: OsFamily;
  writer: AtomicWriter;
  /** The node server's logger with this volume's id on every line. */
  log: Logger;
  /** Hash of the sources of the store currently on disk. */
  storeHash?: string;
  /** The payload last written (unknown after a restart). */
  written?: Payload;
  lastError?: string;
  /** `reason:sha256` of each custom certificate the store on disk leaves out (already reported). */
  dropped: Set<string>;
  /** The sorted keys of the dropped set last named in an Event. */
  droppedEvent?: string;
  queue: Promise<void>;
  pending: boolean;
  closed: boolean;
}

/** The Event message naming each dropped certificate (the recorder cuts it to 1 000 characters). */
function droppedMessage(dropped: readonly DroppedCertificate[]): string {
  const n = dropped.length;
  return `Trust store written without ${n} certificate${n === 1 ? "" : "s"} its sources hold: ` +
    dropped.map((d) =>
      `${d.subject} (sha256 ${d.sha256.slice(0, 16)}) from ${d.source}: ${d.reason}` +
      (d.detail === undefined ? "" : ` (${d.detail})`)
    ).join("; ");
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

/** The CSI Node service's core; see the module documentation. */
export class NodeServer {
  /** Metrics registry. */
  readonly metrics: Registry;
  readonly #opts: NodeServerOptions;
  readonly #log: Logger;
  readonly #objects: ObjectSource;
  readonly #resolver: SourceResolver;
  readonly #payloads: PayloadCache;
  readonly #volumes = new Map<string, Volume>();
  readonly #deps = new DependencyIndex<Volume>();
  readonly #locks = new KeyedLock();
  readonly #renders: Semaphore;
  /** `--tmpfs-size` in bytes. */
  readonly #tmpfsCap: number;
  /** Volume id → message of the last `Forbidden` first publish (its Event was recorded). */
  readonly #refused = new Map<string, string>();
  /** `reason:sha256` of each base root dropped and reported by this process. */
  readonly #baseDropped = new Set<string>();
  /** Whether the node has SELinux (probed once, when built). */
  readonly #selinux: Promise<boolean>;

  /**
   * Builds the server; nothing is read until {@link NodeServer.restore} or a publish.
   *
   * @param options settings and collaborators, see {@link NodeServerOptions}
   */
  constructor(options: NodeServerOptions) {
    this.#opts = options;
    this.#log = options.logger;
    this.#objects = options.objects;
    this.#resolver = new SourceResolver({
      objects: options.objects,
      allowedRefNamespaces: options.allowedRefNamespaces,
      clusterResourceNamespace: options.clusterResourceNamespace,
    });
    this.#payloads = new PayloadCache({ baseRoots: options.baseRoots });
    this.#renders = new Semaphore(options.renderConcurrency ?? 32);
    this.#tmpfsCap = parseSize(options.tmpfsSize);
    const { mounter } = options;
    const probe = options.selinuxEnabled ?? (() =>
      options.plainDir ? false : prepareSelinux({
        mountSelinuxfs: mounter.mountSelinuxfs?.bind(mounter),
        logger: options.logger,
      }));
    this.#selinux = Promise.resolve(probe());
    // A failed probe fails restore() and first publishes; it is not an unhandled rejection before.
    this.#selinux.catch(() => {});
    this.metrics = options.metrics ?? new Registry();
    defineNodeMetrics(this.metrics, {
      volumes: () => this.#volumes.size,
      watchedObjects: () => this.#objects.size,
    });
  }

  /** Number of published volumes. */
  get volumeCount(): number {
    return this.#volumes.size;
  }

  /** Loads the volume records and resumes every volume whose target still holds our store. */
  async restore(): Promise<{ resumed: number; forgotten: number }> {
    const selinux = await this.#selinux;
    const { records, errors } = await this.#opts.state.loadAll();
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
        await this.#opts.state.remove(record.volumeId);
        forgotten++;
        continue;
      }
      let family: OsFamily;
      try {
        family = parseOsFamily(record.os);
      } catch {
        await this.#opts.state.remove(record.volumeId);
        forgotten++;
        continue;
      }
      const volume = this.#newVolume(record, family);
      volume.storeHash = "restored";
      this.#volumes.set(record.volumeId, volume);
      this.#schedule(volume, "restart");
      resumed++;
    }
    this.#log.info("volume records restored", {
      resumed,
      forgotten,
      selinux,
    });
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
    this.#objects.stop();
    for (const v of this.#volumes.values()) v.closed = true;
    await Promise.allSettled([...this.#volumes.values()].map((v) => v.queue));
  }

  /**
   * Re-renders every volume that read the object with this key (`Kind/namespace/name`); the
   * object source's change callback.
   */
  objectChanged(key: string): void {
    for (const volume of this.#deps.dependents(key)) this.#schedule(volume, `changed ${key}`);
  }

  #newVolume(record: VolumeRecord, family: OsFamily): Volume {
    return {
      record,
      family,
      // No fsync: the store is rebuilt from the cluster on every publish and restart, so surviving
      // a power loss buys nothing, while fsync costs milliseconds per file on a plain directory.
      writer: new AtomicWriter(record.targetPath, { fsync: false }),
      log: this.#log.with({ [LOG_KEYS.volumeId]: record.volumeId }),
      dropped: new Set(),
      queue: Promise.resolve(),
      pending: false,
      closed: false,
    };
  }

  /** NodePublishVolume: first publish renders or fails; a republish never fails. */
  publish(req: NodePublishVolumeRequest): Promise<void> {
    const spec = validatePublish(req, { parseOs: parseOsFamily });
    return this.#locks.run(spec.volumeId, async () => {
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
        this.metrics.inc(PUBLISH_TOTAL, { result: "republish" });
        return;
      }
      try {
        await this.#firstPublish(
          spec.volumeId,
          spec.targetPath,
          spec.pod,
          spec.os,
          spec.classes,
          spec.mountFlags,
        );
        this.metrics.inc(PUBLISH_TOTAL, { result: "ok" });
      } catch (error) {
        this.metrics.inc(PUBLISH_TOTAL, { result: "error" });
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
      this.metrics.inc(REPUBLISH_ERRORS);
      volume.log.warn("republish problem masked", { [LOG_KEYS.error]: errorText(error) });
    }
  }

  async #firstPublish(
    volumeId: string,
    targetPath: string,
    pod: PodRef,
    family: OsFamily,
    classes: ObjectName[],
    mountFlags: readonly string[],
  ): Promise<void> {
    const who = `pod ${pod.namespace}/${pod.name}`;
    const { mounter, plainDir } = this.#opts;
    // kubelet's SELinux context (flags already checked by validatePublish), or the default one on
    // an SELinux node: set by the first mount, as a remount cannot change it.
    const mountOptions = plainDir
      ? []
      : tmpfsMountOptions(mountFlags, { enabled: await this.#selinux });
    await Deno.mkdir(targetPath, { recursive: true, mode: 0o750 });
    const record: VolumeRecord = {
      version: 1,
      volumeId,
      targetPath,
      pod,
      os: family,
      classes,
      mounted: !plainDir,
      ...(plainDir ? {} : { mountOptions }),
    };
    const volume = this.#newVolume(record, family);
    let mounted = false;
    try {
      // Rendered first, so the tmpfs is sized from the store and an oversized one is refused
      // before anything is mounted or written.
      const next = await this.#prepare(volume);
      if (!plainDir && !(await mounter.isMounted(targetPath))) {
        const size = String(Math.min(this.#tmpfsCap, tmpfsSizeFor(next.bytes)));
        try {
          await mounter.mount(targetPath, size, mountOptions);
        } catch (error) {
          throw new CsiError(status.INTERNAL, `${errorText(error)} (${who})`, { cause: error });
        }
        mounted = true;
      }
      await this.#store(volume, next);
      await this.#opts.state.save(record);
    } catch (error) {
      this.#release(volume);
      await this.#cleanTarget(targetPath, mounted).catch(() => {});
      if (error instanceof SourceError && error.reason === "Forbidden") {
        this.#forbidden(volumeId, pod, error.message);
      }
      throw toCsiError(error, ` (${who})`);
    }
    this.#refused.delete(volumeId);
    this.#volumes.set(volumeId, volume);
    volume.log.info("volume published", {
      targetPath,
      pod: `${pod.namespace}/${pod.name}`,
      os: family,
      classes: classes.map((c) => `${c.namespace}/${c.name}`),
      ...(mountOptions.length ? { mountOptions: mountOptions.join(",") } : {}),
    });
  }

  /**
   * A first publish the driver may not read a source for: one Warning Event on the pod per
   * distinct message (kubelet retries the publish), naming the namespace and the RoleBinding.
   */
  #forbidden(volumeId: string, pod: PodRef, message: string): void {
    if (this.#refused.get(volumeId) === message) return;
    this.#refused.delete(volumeId);
    this.#refused.set(volumeId, message);
    if (this.#refused.size > MAX_REFUSED) {
      this.#refused.delete(this.#refused.keys().next().value!);
    }
    this.#opts.events.record({ pod, type: "Warning", reason: SOURCE_FORBIDDEN_REASON, message })
      .catch((error) => {
        this.#log.warn("event not recorded", {
          pod: `${pod.namespace}/${pod.name}`,
          error: errorText(error),
        });
      });
  }

  /** NodeUnpublishVolume: forget, unmount and empty the target (idempotent). */
  unpublish(req: NodeUnpublishVolumeRequest): Promise<void> {
    const { volumeId, targetPath } = validateUnpublish(req);
    this.#refused.delete(volumeId);
    return this.#locks.run(volumeId, async () => {
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
      await this.#opts.state.remove(volumeId);
      this.metrics.inc(UNPUBLISH_TOTAL, { result: "ok" });
      this.#log.info("volume unpublished", { volumeId, targetPath, known: volume !== undefined });
    });
  }

  async #cleanTarget(targetPath: string, mayBeMounted: boolean): Promise<void> {
    const { mounter } = this.#opts;
    if (mayBeMounted && (await mounter.isMounted(targetPath))) await mounter.unmount(targetPath);
    // Leave the directory itself: kubelet removes it, non-recursively.
    for await (const entry of Deno.readDir(targetPath)) {
      await Deno.remove(join(targetPath, entry.name), { recursive: true });
    }
  }

  /** NodeGetVolumeStats with a volume condition. */
  async stats(req: NodeGetVolumeStatsRequest): Promise<VolumeStats> {
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

  #schedule(volume: Volume, reason: string): void {
    if (volume.pending || volume.closed) return;
    volume.pending = true;
    volume.queue = volume.queue.then(async () => {
      await this.#renders.acquire();
      try {
        volume.pending = false;
        if (volume.closed) return;
        await this.#render(volume);
        if (volume.lastError !== undefined) {
          volume.log.info("trust store recovered");
          volume.lastError = undefined;
        }
      } catch (error) {
        this.#updateFailed(volume, reason, error);
      } finally {
        this.#renders.release();
      }
    });
  }

  #updateFailed(volume: Volume, reason: string, error: unknown): void {
    const message = errorText(error);
    const { pod } = volume.record;
    const kind = error instanceof SourceError || error instanceof RenderError ? "source" : "render";
    this.metrics.inc(UPDATE_FAILURES, { reason: kind });
    volume.log.warn("update rejected, keeping the last good trust store", {
      pod: `${pod.namespace}/${pod.name}`,
      trigger: reason,
      error: message,
    });
    const repeated = volume.lastError === message;
    volume.lastError = message;
    if (repeated) return;
    this.#opts.events.record({
      pod,
      type: "Warning",
      reason: UPDATE_FAILED_REASON,
      message: `Keeping the last good trust store: ${message}`,
    }).catch((error) => {
      volume.log.warn("event not recorded", {
        pod: `${pod.namespace}/${pod.name}`,
        error: errorText(error),
      });
    });
  }

  /** Gives back every watch reference the volume holds. */
  #release(volume: Volume): void {
    for (const dep of this.#deps.remove(volume)) this.#objects.release(dep);
  }

  async #render(volume: Volume): Promise<void> {
    const hash = await this.#resolveHash(volume);
    if (hash.hash === volume.storeHash) return;
    await this.#store(volume, await this.#payloadOf(volume, hash));
  }

  /** Resolves and renders the volume's store, checked against the tmpfs cap. */
  async #prepare(volume: Volume): Promise<NextStore> {
    return await this.#payloadOf(volume, await this.#resolveHash(volume));
  }

  async #resolveHash(volume: Volume): Promise<{ hash: string; sources: PemSource[] }> {
    const deps: WatchedObject[] = [];
    let sources: PemSource[];
    try {
      sources = await this.#resolver.resolve(volume.record, deps);
    } finally {
      // Keep following whatever was read, even when it was unusable, so a fix is picked up.
      for (const dep of this.#deps.replace(volume, deps)) this.#objects.release(dep);
    }
    return { hash: storeHash(volume.family, sources), sources };
  }

  /**
   * The rendered store; on a tmpfs the swap to it (the store on disk, its changed files and the
   * slack) must fit the cap.
   *
   * @throws {StoreTooLargeError} before anything is written
   */
  async #payloadOf(
    volume: Volume,
    { hash, sources }: { hash: string; sources: PemSource[] },
  ): Promise<NextStore> {
    const { payload, dropped } = await this.#payloads.render(hash, volume.family, sources);
    const bytes = payloadTmpfsBytes(payload);
    const added = changedTmpfsBytes(payload, volume.written);
    if (!this.#opts.plainDir) {
      const live = volume.written ? payloadTmpfsBytes(volume.written) : 0;
      const needed = swapPeakBytes(live, added);
      if (needed > this.#tmpfsCap) {
        throw new StoreTooLargeError(bytes, needed, this.#tmpfsCap, this.#opts.tmpfsSize);
      }
    }
    return { hash, payload, bytes, added, dropped };
  }

  /**
   * Grows the volume's tmpfs in place (up to the cap) when what is on it now plus the files the
   * next store adds would not fit during the swap.
   */
  async #fit(volume: Volume, next: NextStore): Promise<void> {
    const { mounter } = this.#opts;
    if (this.#opts.plainDir || !mounter.resize) return;
    const path = volume.record.targetPath;
    const fs = await statfs(path);
    const size = Number(fs.blocks) * Number(fs.bsize);
    const used = (Number(fs.blocks) - Number(fs.bfree)) * Number(fs.bsize);
    const peak = swapPeakBytes(used, next.added);
    if (peak <= size) return;
    const grown = Math.ceil(peak / TMPFS_SIZE_STEP_BYTES) * TMPFS_SIZE_STEP_BYTES;
    const target = Math.min(this.#tmpfsCap, Math.max(tmpfsSizeFor(next.bytes), grown));
    // At the cap already: the write may still fit (unchanged files are hard-linked).
    if (target <= size) return;
    await mounter.resize(path, target);
    volume.log.info("tmpfs resized for the next store", {
      from: size,
      to: target,
      used,
      added: next.added,
    });
  }

  async #store(volume: Volume, next: NextStore): Promise<void> {
    if (volume.closed) return;
    await this.#fit(volume, next);
    const { changed } = await volume.writer.write(next.payload);
    volume.written = next.payload;
    const hash = next.hash;
    volume.storeHash = hash;
    if (changed) {
      this.metrics.inc(STORE_WRITES);
      volume.log.debug("trust store written", { targetPath: volume.record.targetPath });
    }
    this.#reportDropped(volume, next.dropped);
  }

  /**
   * Reports the certificates the store just written leaves out: a warn line and a count for each
   * one not already reported for this volume (base roots: for this process), and a Warning Event
   * when the volume's set of dropped custom certificates is new and not empty.
   */
  #reportDropped(volume: Volume, dropped: readonly DroppedCertificate[]): void {
    const { pod } = volume.record;
    const current = new Set<string>();
    const custom: DroppedCertificate[] = [];
    for (const d of dropped) {
      const key = `${d.reason}:${d.sha256}`;
      const reported = d.fromBase ? this.#baseDropped : volume.dropped;
      if (!d.fromBase) {
        if (current.has(key)) continue;
        current.add(key);
        custom.push(d);
      }
      if (reported.has(key)) continue;
      if (d.fromBase) this.#baseDropped.add(key);
      this.metrics.inc(CERTIFICATES_DROPPED, { reason: d.reason });
      const log = d.fromBase ? this.#log : volume.log;
      log.warn("certificate dropped from the trust store", {
        subject: d.subject,
        sha256: d.sha256,
        source: d.source,
        [LOG_KEYS.reason]: d.reason,
        ...(d.detail === undefined ? {} : { detail: d.detail }),
        ...(d.fromBase ? { base: true } : { pod: `${pod.namespace}/${pod.name}` }),
      });
    }
    volume.dropped = current;
    const eventKey = [...current].sort().join(",");
    if (custom.length === 0) {
      volume.droppedEvent = undefined;
      return;
    }
    if (volume.droppedEvent === eventKey) return;
    volume.droppedEvent = eventKey;
    this.#opts.events.record({
      pod,
      type: "Warning",
      reason: CERTIFICATE_DROPPED_REASON,
      message: droppedMessage(custom),
    }).catch((error) => {
      volume.log.warn("event not recorded", {
        pod: `${pod.namespace}/${pod.name}`,
        error: errorText(error),
      });
    });
  }
}
