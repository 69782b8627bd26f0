/**
 * Shared pieces of the fault suite: a CSI gRPC client that reports status codes, CA
 * "generations" whose files can be told apart, a reader that checks a mounted trust store is
 * wholly one generation, Secret writes through the real apiserver, and mount helpers.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { CLASS_API_VERSION, CLASS_KIND, CLASSES_ATTRIBUTE } from "../../api/mod.ts";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { nodeService } from "../../csi/proto.ts";
import { DevCa } from "../../x509/mod.ts";
import { storeFiles } from "../../trust_store/mod.ts";
import { installCrds, type KubeApiServer, runCommand, startKubeApiServer } from "../harness/mod.ts";
import { applyObject, pemFingerprints } from "../harness/kube_objects.ts";
import { setTimeout as delay } from "node:timers/promises";

/** The CAProviderClass CRD the harness ships. */
export const CRD_PATH = new URL("../harness/fixtures/caproviderclass_crd.yaml", import.meta.url)
  .pathname;

/** Namespace of the test pods, their classes and Secrets. */
export const NS = "shop";

/** Sleeps `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => delay(ms);

/** A store invariant was broken (what a reader must never see). */
export class StoreViolationError extends Error {
  /** @param message what the reader saw */
  constructor(message: string) {
    super(message);
    this.name = "StoreViolationError";
  }
}

/** A scratch directory and a kube-apiserver, from {@link startScratchApiServer}. */
export interface ScratchApiServer {
  /** The scratch directory (volume targets and driver state live below it). */
  dir: string;
  /** The running apiserver. */
  kube: KubeApiServer;
  /** Unmounts everything below `dir`, stops the apiserver and removes `dir`. */
  cleanup(): Promise<void>;
}

/**
 * Makes a scratch directory and starts a kube-apiserver (with its etcd). When the apiserver does
 * not start, the directory is removed before the error is rethrown.
 */
export async function startScratchApiServer(prefix: string): Promise<ScratchApiServer> {
  const dir = await Deno.makeTempDir({ prefix });
  let kube: KubeApiServer;
  try {
    kube = await startKubeApiServer();
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  return {
    dir,
    kube,
    cleanup: async () => {
      await unmountUnder(dir);
      await kube.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Applies the CRD, waits until it is served and creates the test namespace. */
export async function setupCluster(kube: KubeApiServer): Promise<void> {
  await installCrds(kube, CRD_PATH);
  await kube.kubectl(["create", "namespace", NS], { check: true });
}

/** Applies one object with kubectl. */
export const apply: (kube: KubeApiServer, object: unknown) => Promise<void> = applyObject;

/** A CAProviderClass in {@link NS} referencing one Secret (or ConfigMap) key. */
export function caProviderClass(
  name: string,
  ref: { kind: "Secret" | "ConfigMap"; name: string; key?: string; namespace?: string },
): Record<string, unknown> {
  return {
    apiVersion: CLASS_API_VERSION,
    kind: CLASS_KIND,
    metadata: { namespace: NS, name },
    spec: { refs: [{ apiGroup: "", ...ref }] },
  };
}

/** Base64 of text or bytes (Secret `data` values). */
export function b64(value: string | Uint8Array): string {
  const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Creates or replaces Secret `NS/name` with `data` (raw values, encoded here). */
export async function putSecret(
  core: CoreV1Api,
  name: string,
  data: Record<string, string | Uint8Array>,
): Promise<string | undefined> {
  const body = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { namespace: NS, name },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
  };
  try {
    const out = await core.replaceNamespacedSecret({ namespace: NS, name, body });
    return out.metadata?.resourceVersion;
  } catch (error) {
    if ((error as { code?: number }).code !== 404) throw error;
    const out = await core.createNamespacedSecret({ namespace: NS, body });
    return out.metadata?.resourceVersion;
  }
}

/** A CoreV1Api client for a kubeconfig. */
export function coreApi(kubeConfig: KubeConfig): CoreV1Api {
  return kubeConfig.makeApiClient(CoreV1Api);
}

export { pemFingerprints };

/** One generation of store content: a set of CA certificates no other generation shares. */
export interface Generation {
  /** 1-based index, in the order the test writes them. */
  index: number;
  /** The PEM the Secret holds. */
  pem: string;
  /** Fingerprints of its certificates. */
  fingerprints: Set<string>;
  /** DER of each certificate (to find inside the JKS). */
  ders: Uint8Array[];
}

/** Creates `count` generations of `perGeneration` fresh CA certificates each. */
export async function makeGenerations(count: number, perGeneration = 2): Promise<Generation[]> {
  const out: Generation[] = [];
  for (let i = 1; i <= count; i++) {
    const cas = await Promise.all(
      Array.from({ length: perGeneration }, (_, j) => DevCa.create(i * 10 + j)),
    );
    const certs = cas.map((ca) => new X509Certificate(ca.certPem));
    out.push({
      index: i,
      pem: cas.map((ca) => ca.certPem).join(""),
      fingerprints: new Set(certs.map((c) => c.fingerprint256)),
      ders: certs.map((c) => new Uint8Array(c.raw)),
    });
  }
  return out;
}

/** The debian layout's keystores (JKS and PKCS#12), from the renderer's file table. */
const KEYSTORES: readonly string[] = [storeFiles("debian").java, storeFiles("debian").pkcs12];

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

function walk(root: string, prefix = "", out = new Map<string, Uint8Array>()) {
  for (const entry of Deno.readDirSync(join(root, prefix))) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) walk(root, rel, out);
    else out.set(rel, Deno.readFileSync(join(root, rel)));
  }
  return out;
}

/** Finds which generation a list of fingerprints is, or throws naming the mix. */
export function generationOf(fps: string[], generations: Generation[], what: string): number {
  if (fps.length === 0) throw new StoreViolationError(`${what} holds no certificate`);
  const gen = generations.find((g) => g.fingerprints.has(fps[0]));
  if (!gen) throw new StoreViolationError(`${what} holds a certificate of no known generation`);
  const set = new Set(fps);
  if (set.size !== gen.fingerprints.size || fps.some((f) => !gen.fingerprints.has(f))) {
    throw new StoreViolationError(
      `${what} is not wholly generation ${gen.index}: ${fps.length} certificates, ` +
        `${fps.filter((f) => gen.fingerprints.has(f)).length} of them from it`,
    );
  }
  return gen.index;
}

/**
 * Reads one consistent view of a debian-layout store the way a careful reader does: resolve
 * `..data` once, read every file under it, check `..data` still points there. Returns the
 * generation, or undefined when a swap happened mid-read (readers retry, as with kubelet's
 * AtomicWriter). Throws {@link StoreViolationError} for anything mixed, partial or empty.
 */
export function readView(target: string, generations: Generation[]): number | undefined {
  let link: string;
  try {
    link = Deno.readLinkSync(join(target, "..data"));
  } catch (error) {
    throw new StoreViolationError(`..data unreadable: ${(error as Error).message}`);
  }
  let files: Map<string, Uint8Array>;
  try {
    files = walk(join(target, link));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  // The snapshot protocol of trust_store/atomic_writer.ts: a generation removed while it
  // was listed can read short without an error, so a view counts only if `..data` did not move.
  try {
    if (Deno.readLinkSync(join(target, "..data")) !== link) return undefined;
  } catch (error) {
    throw new StoreViolationError(`..data unreadable: ${(error as Error).message}`);
  }
  const bundle = files.get("ca-certificates.crt");
  if (!bundle) throw new StoreViolationError(`${link} has no ca-certificates.crt`);
  const text = new TextDecoder().decode(bundle);
  const gen = generationOf(pemFingerprints(text), generations, `${link}/ca-certificates.crt`);
  const g = generations[gen - 1];
  let pemFiles = 0;
  for (const [rel, bytes] of files) {
    if (bytes.length === 0) throw new StoreViolationError(`${link}/${rel} is empty`);
    // The keystores (JKS and PKCS#12) hold each certificate's DER as is.
    if (KEYSTORES.includes(rel)) {
      for (const der of g.ders) {
        if (!contains(bytes, der)) {
          throw new StoreViolationError(`${link}/${rel} lacks a generation ${gen} CA`);
        }
      }
      continue;
    }
    const fps = pemFingerprints(new TextDecoder().decode(bytes));
    if (fps.length === 0) throw new StoreViolationError(`${link}/${rel} holds no certificate`);
    for (const f of fps) {
      if (!g.fingerprints.has(f)) {
        throw new StoreViolationError(
          `${link}/${rel} holds a certificate not of generation ${gen}`,
        );
      }
    }
    pemFiles++;
  }
  // ca-certificates.crt + one .pem and one hash name per certificate.
  if (pemFiles !== 1 + 2 * g.fingerprints.size || !KEYSTORES.every((k) => files.has(k))) {
    throw new StoreViolationError(
      `${link} is incomplete: ${[...files.keys()].sort().join(", ")}`,
    );
  }
  return gen;
}

/** Reads the top-level `ca-certificates.crt` link (one open): its generation or undefined. */
export function readBundleLink(target: string, generations: Generation[]): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(join(target, "ca-certificates.crt"));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return generationOf(pemFingerprints(text), generations, "ca-certificates.crt (via link)");
}

/** What a {@link StoreReader} saw. */
export interface ReaderReport {
  /** Full views read. */
  views: number;
  /** Views retried because the old directory vanished mid-read. */
  retries: number;
  /** Distinct generations seen, in order of first sight. */
  generations: number[];
  /** Invariant violations (must be empty). */
  violations: string[];
}

/**
 * Polls a store continuously (one full view, then one read through the top-level link, then
 * yields), recording generations and every violation, until {@link stop} is called. Generations
 * must never go backwards.
 */
export class StoreReader {
  readonly #report: ReaderReport = { views: 0, retries: 0, generations: [], violations: [] };
  #stopped = false;
  #last = 0;
  readonly #done: Promise<void>;

  /** @param target the volume; @param generations the known generations */
  constructor(readonly target: string, readonly generations: Generation[]) {
    this.#done = this.#loop();
  }

  #see(gen: number | undefined, how: string): void {
    if (gen === undefined) {
      this.#report.retries++;
      return;
    }
    if (gen < this.#last) {
      this.#violation(`${how}: generation went back from ${this.#last} to ${gen}`);
    }
    if (!this.#report.generations.includes(gen)) this.#report.generations.push(gen);
    this.#last = Math.max(this.#last, gen);
  }

  #violation(message: string): void {
    if (this.#report.violations.length < 20) this.#report.violations.push(message);
  }

  #observe(): void {
    try {
      const gen = readView(this.target, this.generations);
      this.#see(gen, "view");
      if (gen !== undefined) this.#report.views++;
      this.#see(readBundleLink(this.target, this.generations), "link");
    } catch (error) {
      this.#violation(error instanceof Error ? error.message : String(error));
    }
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      this.#observe();
      await sleep(2);
    }
  }

  /**
   * Stops polling and returns what was seen, after one last view: a caller that has just seen
   * the store converge must find that generation in the report even when it stopped the reader
   * between two of its polls.
   */
  async stop(): Promise<ReaderReport> {
    this.#stopped = true;
    await this.#done;
    this.#observe();
    return this.#report;
  }
}

/** The fields of a NodePublishVolume request this suite sets. */
export interface PublishFields {
  volumeId?: string;
  targetPath?: string;
  volumeCapability?: Record<string, unknown> | undefined;
  readonly?: boolean;
  volumeContext?: Record<string, string>;
}

/** A valid inline-volume publish request for pod `pod` using class `cls`. */
export function publishRequest(
  volumeId: string,
  targetPath: string,
  pod: string,
  cls: string,
): Required<PublishFields> {
  return {
    volumeId,
    targetPath,
    volumeCapability: {
      mount: { fsType: "tmpfs" },
      accessMode: { mode: "SINGLE_NODE_READER_ONLY" },
    },
    readonly: true,
    volumeContext: {
      "csi.storage.k8s.io/ephemeral": "true",
      "csi.storage.k8s.io/pod.name": pod,
      "csi.storage.k8s.io/pod.namespace": NS,
      "csi.storage.k8s.io/pod.uid": `uid-${pod}`,
      os: "debian",
      [CLASSES_ATTRIBUTE]: cls,
    },
  };
}

/** A CSI call's failure: the gRPC status code and message. */
export class CsiCallError extends Error {
  /** @param code gRPC status; @param details the server's message */
  constructor(readonly code: grpc.status, readonly details: string) {
    super(`${grpc.status[code]}: ${details}`);
    this.name = "CsiCallError";
  }
}

type Call = (req: object, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void;

/** A grpc-js client of the driver's Node service over its unix socket. */
export class CsiClient {
  readonly #client: grpc.Client;

  /** @param endpoint `unix://...` */
  constructor(endpoint: string) {
    const Client = grpc.makeGenericClientConstructor(nodeService, "Node");
    this.#client = new Client(endpoint, grpc.credentials.createInsecure());
  }

  #call<T>(method: string, req: object): Promise<T> {
    const fn = (this.#client as unknown as Record<string, Call>)[method].bind(this.#client);
    return new Promise((resolve, reject) =>
      fn(req, (e, r) => {
        if (e) reject(new CsiCallError(e.code, e.details));
        else resolve(r as T);
      })
    );
  }

  /** NodePublishVolume. */
  publish(req: PublishFields): Promise<unknown> {
    return this.#call("NodePublishVolume", req);
  }

  /** NodeUnpublishVolume. */
  unpublish(volumeId: string, targetPath: string): Promise<unknown> {
    return this.#call("NodeUnpublishVolume", { volumeId, targetPath });
  }

  /** NodeGetVolumeStats. */
  stats(volumeId: string, volumePath: string): Promise<
    { volumeCondition?: { abnormal: boolean; message: string } }
  > {
    return this.#call("NodeGetVolumeStats", { volumeId, volumePath });
  }

  /** Closes the channel. */
  close(): void {
    this.#client.close();
  }
}

/** Whether `path` is a mount point. */
export async function isMountPoint(path: string): Promise<boolean> {
  const info = await Deno.readTextFile("/proc/self/mountinfo");
  return info.split("\n").some((line) => line.split(" ")[4] === path);
}

/** Unmounts every mount at or under `root` (deepest first); for `finally` blocks. */
export async function unmountUnder(root: string): Promise<void> {
  const info = await Deno.readTextFile("/proc/self/mountinfo");
  const points = info.split("\n").map((l) => l.split(" ")[4]).filter((p) =>
    p && (p === root || p.startsWith(root + "/"))
  ).sort((a, b) => b.length - a.length);
  for (const p of points) await runCommand(["umount", "-l", p]);
}

/** A directory tree as relative path → content (symlinks as `-> target`), for "unchanged". */
export async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (prefix: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(join(root, prefix)));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    for (const e of entries) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      const abs = join(root, rel);
      if (e.isSymlink) out.set(rel, `-> ${await Deno.readLink(abs)}`);
      else if (e.isDirectory) {
        out.set(rel + "/", "dir");
        await visit(rel);
      } else out.set(rel, b64(await Deno.readFile(abs)));
    }
  };
  await visit("");
  return out;
}
