/**
 * In-memory fakes of the node server's collaborators, and a harness that builds a
 * {@link NodeServer} on them with its volumes in a temporary directory. For `csi/*_test.ts` only;
 * the real collaborators are proven by the suites under `tests/`.
 *
 * @module
 */

import { join } from "node:path";
import { createLogger, type Logger } from "../cli/mod.ts";
import { objectKey, type WatchedKind, type WatchedObject } from "../kube/mod.ts";
import type { EventRecorder, PodEvent } from "./events.ts";
import type { Mounter } from "./mount.ts";
import { NodeServer, type NodeServerOptions } from "./node_server.ts";
import type { NodePublishVolumeRequest, NodeUnpublishVolumeRequest } from "./proto.ts";
import type { ObjectSource } from "./resolver.ts";
import type { StateFileError, VolumeRecord, VolumeStateStore } from "./state.ts";
import { CLASSES_ATTRIBUTE, OS_ATTRIBUTE, POD_KEYS } from "./validation.ts";

/** An API server in memory: objects by key, reference counts, failures and a gate on reads. */
export class FakeObjects implements ObjectSource {
  /** Called with the key of a followed object that changed (the node server's callback). */
  onChange: (key: string) => void = () => {};
  /** Acquire calls so far. */
  acquires = 0;
  /** Acquire calls waiting at the gate now, and the most ever at once. */
  inFlight = 0;
  /** See {@link FakeObjects.inFlight}. */
  maxInFlight = 0;
  /** Whether stop() was called. */
  stopped = false;
  readonly #objects = new Map<string, Record<string, unknown>>();
  readonly #errors = new Map<string, unknown>();
  readonly #refs = new Map<string, number>();
  #gate: Promise<void> = Promise.resolve();

  /** Objects followed now. */
  get size(): number {
    return this.#refs.size;
  }

  /** References held on an object. */
  refs(kind: WatchedKind, namespace: string, name: string): number {
    return this.#refs.get(objectKey({ kind, namespace, name })) ?? 0;
  }

  /** Takes a reference, then waits at the gate (see {@link FakeObjects.hold}). */
  async acquire(o: WatchedObject): Promise<void> {
    const key = objectKey(o);
    this.acquires++;
    this.#refs.set(key, (this.#refs.get(key) ?? 0) + 1);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await this.#gate;
    } finally {
      this.inFlight--;
    }
  }

  /** The object, null when absent, undefined when not followed. */
  get(o: WatchedObject): Record<string, unknown> | null | undefined {
    const key = objectKey(o);
    if (!this.#refs.has(key)) return undefined;
    return this.#objects.get(key) ?? null;
  }

  /** The failure set with {@link FakeObjects.fail}. */
  error(o: WatchedObject): unknown {
    return this.#errors.get(objectKey(o));
  }

  /** Drops a reference. */
  release(o: WatchedObject): void {
    const key = objectKey(o);
    const n = (this.#refs.get(key) ?? 0) - 1;
    if (n > 0) this.#refs.set(key, n);
    else this.#refs.delete(key);
  }

  /** Drops every reference. */
  stop(): void {
    this.stopped = true;
    this.#refs.clear();
  }

  /** Stores (or, with null, deletes) an object and reports the change if it is followed. */
  put(kind: WatchedKind, namespace: string, name: string, object: Record<string, unknown> | null) {
    const key = objectKey({ kind, namespace, name });
    if (object) this.#objects.set(key, object);
    else this.#objects.delete(key);
    if (this.#refs.has(key)) this.onChange(key);
  }

  /** Makes reads of an object fail (as a list that got `error`), the object unknown. */
  fail(kind: WatchedKind, namespace: string, name: string, error: unknown): void {
    const key = objectKey({ kind, namespace, name });
    this.#errors.set(key, error);
    this.#objects.delete(key);
    if (this.#refs.has(key)) this.onChange(key);
  }

  /** Holds every acquire until the returned function is called. */
  hold(): () => void {
    let open!: () => void;
    this.#gate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#gate = Promise.resolve();
      open();
    };
  }
}

/** A mounter that only remembers which paths are "mounted". */
export class FakeMounter implements Mounter {
  /** Paths mounted now. */
  readonly mounted = new Set<string>();
  /** mount() calls so far. */
  mounts = 0;
  /** unmount() calls so far. */
  unmounts = 0;
  /** When set, mount() throws it. */
  failWith?: Error;
  /** Arguments of every successful mount() call, in order. */
  readonly calls: { path: string; size: string; options: readonly string[] }[] = [];

  /** Whether `path` was mounted and not unmounted. */
  isMounted(path: string): Promise<boolean> {
    return Promise.resolve(this.mounted.has(path));
  }

  /** Marks `path` mounted (or throws {@link FakeMounter.failWith}). */
  mount(path: string, size: string, options: readonly string[] = []): Promise<void> {
    if (this.failWith) return Promise.reject(this.failWith);
    this.mounts++;
    this.calls.push({ path, size, options: [...options] });
    this.mounted.add(path);
    return Promise.resolve();
  }

  /** Marks `path` unmounted. */
  unmount(path: string): Promise<void> {
    this.unmounts++;
    this.mounted.delete(path);
    return Promise.resolve();
  }
}

/** Volume records in a map. */
export class FakeStateStore implements VolumeStateStore {
  /** Records by volume id. */
  readonly records = new Map<string, VolumeRecord>();
  /** Returned by loadAll() as unreadable files. */
  errors: StateFileError[] = [];

  /** Keeps a copy of the record. */
  save(record: VolumeRecord): Promise<void> {
    this.records.set(record.volumeId, structuredClone(record));
    return Promise.resolve();
  }

  /** Forgets the record. */
  remove(volumeId: string): Promise<void> {
    this.records.delete(volumeId);
    return Promise.resolve();
  }

  /** Copies of every record. */
  loadAll(): Promise<{ records: VolumeRecord[]; errors: StateFileError[] }> {
    return Promise.resolve({
      records: [...this.records.values()].map((r) => structuredClone(r)),
      errors: this.errors,
    });
  }
}

/** Events kept in a list. */
export class FakeEvents implements EventRecorder {
  /** Events recorded, in order. */
  readonly events: PodEvent[] = [];

  /** Appends the event. */
  record(event: PodEvent): Promise<void> {
    this.events.push(event);
    return Promise.resolve();
  }
}

/** A Secret holding `ca.crt`. */
export function caSecret(pem: string): Record<string, unknown> {
  return { metadata: { resourceVersion: crypto.randomUUID() }, data: { "ca.crt": btoa(pem) } };
}

/** A CAProviderClass whose refs are Secrets (keyless: `ca.crt`, else `tls.crt`). */
export function secretClass(...secrets: string[]): Record<string, unknown> {
  return {
    metadata: { resourceVersion: crypto.randomUUID() },
    spec: { refs: secrets.map((name) => ({ kind: "Secret", name })) },
  };
}

/** Collaborator fakes, a temporary directory and the server built on them. */
export interface Harness {
  /** The server under test. */
  server: NodeServer;
  /** Its fakes. */
  objects: FakeObjects;
  /** Its fakes. */
  mounter: FakeMounter;
  /** Its fakes. */
  state: FakeStateStore;
  /** Its fakes. */
  events: FakeEvents;
  /** Temporary directory holding the targets. */
  dir: string;
  /** A target path in {@link Harness.dir}. */
  target(volumeId: string): string;
  /** A valid NodePublishVolume request of pod `shop/web` for `classes`, with kubelet's flags. */
  publishRequest(
    volumeId: string,
    classes?: string,
    os?: string,
    mountFlags?: string[],
  ): NodePublishVolumeRequest;
  /** The matching NodeUnpublishVolume request. */
  unpublishRequest(volumeId: string): NodeUnpublishVolumeRequest;
  /** Another server on the same fakes and directory (a restarted driver). */
  restart(): NodeServer;
  /** Stops the server and removes the directory. */
  close(): Promise<void>;
}

const quiet: Logger = createLogger("error", () => {});

/**
 * Builds a {@link Harness}; `options` override the server's settings. The node has no SELinux
 * unless `options.selinuxEnabled` says so (the host's is not probed).
 */
export async function harness(options: Partial<NodeServerOptions> = {}): Promise<Harness> {
  const dir = await Deno.makeTempDir({ prefix: "node_server_test_" });
  const objects = new FakeObjects();
  const mounter = new FakeMounter();
  const state = new FakeStateStore();
  const events = new FakeEvents();
  const build = () => {
    const server = new NodeServer({
      objects,
      events,
      mounter,
      state,
      logger: quiet,
      plainDir: false,
      tmpfsSize: "1Mi",
      allowedRefNamespaces: [],
      selinuxEnabled: () => false,
      ...options,
    });
    objects.onChange = (key) => server.objectChanged(key);
    return server;
  };
  const h: Harness = {
    server: build(),
    objects,
    mounter,
    state,
    events,
    dir,
    target: (volumeId) => join(dir, volumeId, "mount"),
    publishRequest: (volumeId, classes = "spire-ca", os = "debian", mountFlags) => ({
      volumeId,
      targetPath: h.target(volumeId),
      stagingTargetPath: "",
      volumeCapability: {
        accessType: "mount",
        accessMode: { mode: "SINGLE_NODE_READER_ONLY" },
        ...(mountFlags ? { mount: { mountFlags } } : {}),
      },
      readonly: true,
      volumeContext: {
        [POD_KEYS.namespace]: "shop",
        [POD_KEYS.name]: "web",
        [POD_KEYS.uid]: "uid-1",
        [POD_KEYS.ephemeral]: "true",
        [OS_ATTRIBUTE]: os,
        [CLASSES_ATTRIBUTE]: classes,
      },
      publishContext: {},
      secrets: {},
    } as NodePublishVolumeRequest),
    unpublishRequest: (volumeId) => ({ volumeId, targetPath: h.target(volumeId) }),
    restart: () => (h.server = build()),
    close: async () => {
      await h.server.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
  return h;
}

/** Reads a file of a volume's current store. */
export function readStore(targetPath: string, file: string): Promise<string> {
  return Deno.readTextFile(join(targetPath, file));
}
