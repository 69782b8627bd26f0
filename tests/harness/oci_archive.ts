/**
 * Reproducible tar layers and OCI image-layout archives, written without a container tool.
 *
 * No registry and no image builder (docker, podman, buildah) exist on the test machines, and
 * `ctr images import` (containerd 1.6) only needs an OCI image layout packed as a tar: an
 * `oci-layout` file, `index.json`, and content-addressed blobs. Both tar levels are written here
 * by hand — Deno has no tar writer and GNU tar cannot set xattrs (file capabilities) from a list —
 * with mtime 0, uid/gid from the entry and sorted paths, so equal inputs give equal digests.
 *
 * ```ts
 * const layer = await writeLayer([{ path: "pause", type: "file", mode: 0o755, source: bin }], out);
 * await writeImageArchive({ ref: "registry.k8s.io/pause:3.10", layers: [layer],
 *   config: { Entrypoint: ["/pause"] } }, "pause.tar");
 * ```
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { dirname } from "node:path";

/** One file, directory or symlink in a layer. Paths are absolute-looking (`/etc/passwd`). */
export interface TarEntry {
  /** Path inside the image, e.g. `/usr/local/bin/deno`. */
  path: string;
  /** Kind of entry. */
  type: "file" | "dir" | "symlink";
  /** Permission bits, e.g. `0o755`. */
  mode: number;
  /** Owner uid (default 0). */
  uid?: number;
  /** Owner gid (default 0). */
  gid?: number;
  /** For files: a host path to copy the content from. */
  source?: string;
  /** For files: the content itself (instead of `source`). */
  data?: Uint8Array;
  /** For symlinks: the target. */
  linkname?: string;
  /** Extended attributes (e.g. `security.capability`), written as PAX `SCHILY.xattr.` records. */
  xattrs?: Record<string, Uint8Array>;
}

/** A layer blob on disk (uncompressed, so its digest is also its diff id). */
export interface LayerBlob {
  /** `sha256:<hex>` of the tar. */
  digest: string;
  /** Size in bytes. */
  size: number;
  /** Path of the tar file. */
  path: string;
}

/** The runtime part of an OCI image config (the `config` object). */
export interface ImageRuntimeConfig {
  /** `uid:gid` or a user name. */
  User?: string;
  /** `NAME=value` entries. */
  Env?: string[];
  /** Executable and leading arguments. */
  Entrypoint?: string[];
  /** Default arguments. */
  Cmd?: string[];
  /** Working directory. */
  WorkingDir?: string;
  /** Ports, e.g. `{ "53/udp": {} }`. */
  ExposedPorts?: Record<string, Record<string, never>>;
  /** Labels. */
  Labels?: Record<string, string>;
}

/** What {@link writeImageArchive} packs. */
export interface ImageArchiveSpec {
  /** Full reference, e.g. `ghcr.io/spiffe/spire-server:1.13.3`. */
  ref: string;
  /** Layers, bottom first. */
  layers: LayerBlob[];
  /** Runtime config. */
  config: ImageRuntimeConfig;
  /** One history line per layer (`created_by`), for `ctr`/`crictl` inspection. */
  history?: string[];
}

/** Digests and sizes of a written image archive. */
export interface ImageArchiveInfo {
  /** Digest of the image manifest (what `ctr images ls` shows). */
  manifestDigest: string;
  /** Digest of the config blob (the image id). */
  configDigest: string;
  /** Archive size in bytes. */
  size: number;
}

/** Thrown for an entry a tar cannot hold as given (bad path, missing content). */
export class TarEntryError extends Error {
  /** @param path the entry @param reason what is wrong */
  constructor(path: string, reason: string) {
    super(`tar entry ${path}: ${reason}`);
    this.name = "TarEntryError";
  }
}

/** OCI image manifest media type. */
export const MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
/** OCI image index media type. */
export const MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json";
/** OCI image config media type. */
export const MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json";
/** Uncompressed OCI layer media type (no gzip: the layers are local and mostly binaries). */
export const MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar";

const BLOCK = 512;
const CHUNK = 1 << 20;
const encoder = new TextEncoder();

/** `sha256:<hex>` of bytes. */
export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Writes all bytes to a file and into a running hash, tracking the size. */
class HashingWriter {
  readonly #file: Deno.FsFile;
  readonly #hash: Hash = createHash("sha256");
  size = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.#hash.update(bytes);
    this.size += bytes.length;
    let offset = 0;
    while (offset < bytes.length) offset += await this.#file.write(bytes.subarray(offset));
  }

  digest(): string {
    return `sha256:${this.#hash.digest("hex")}`;
  }
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function putString(block: Uint8Array, offset: number, width: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.length > width) throw new TarEntryError(value, `longer than ${width} bytes`);
  block.set(bytes, offset);
}

/** One PAX record: "<len> <key>=<value>\n", where <len> counts the whole record. */
function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const body = encoder.encode(` ${key}=`).length + value.length + 1;
  let length = body + String(body).length;
  if (String(length).length !== String(body).length) length = body + String(length).length;
  const head = encoder.encode(`${length} ${key}=`);
  const record = new Uint8Array(length);
  record.set(head, 0);
  record.set(value, head.length);
  record[length - 1] = 0x0a;
  return record;
}

function header(
  name: string,
  typeflag: string,
  mode: number,
  uid: number,
  gid: number,
  size: number,
  linkname: string,
): Uint8Array {
  const block = new Uint8Array(BLOCK);
  putString(block, 0, 100, name);
  putString(block, 100, 8, octal(mode & 0o7777, 8));
  putString(block, 108, 8, octal(uid, 8));
  putString(block, 116, 8, octal(gid, 8));
  putString(block, 124, 12, octal(size, 12));
  putString(block, 136, 12, octal(0, 12));
  block.fill(0x20, 148, 156);
  putString(block, 156, 1, typeflag);
  putString(block, 157, 100, linkname);
  putString(block, 257, 6, "ustar\0");
  putString(block, 263, 2, "00");
  let sum = 0;
  for (const byte of block) sum += byte;
  putString(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

function padding(size: number): Uint8Array {
  const rest = size % BLOCK;
  return new Uint8Array(rest === 0 ? 0 : BLOCK - rest);
}

async function entrySize(entry: TarEntry): Promise<number> {
  if (entry.type !== "file") return 0;
  if (entry.data) return entry.data.length;
  if (!entry.source) throw new TarEntryError(entry.path, "a file needs data or source");
  return (await Deno.stat(entry.source)).size;
}

async function writeEntry(out: HashingWriter, entry: TarEntry, name: string): Promise<void> {
  const typeflag = entry.type === "file" ? "0" : entry.type === "dir" ? "5" : "2";
  const linkname = entry.linkname ?? "";
  const size = await entrySize(entry);
  const records: Uint8Array[] = [];
  const nameBytes = encoder.encode(name).length;
  if (nameBytes > 100) records.push(paxRecord("path", encoder.encode(name)));
  if (encoder.encode(linkname).length > 100) {
    records.push(paxRecord("linkpath", encoder.encode(linkname)));
  }
  for (const [key, value] of Object.entries(entry.xattrs ?? {}).sort()) {
    records.push(paxRecord(`SCHILY.xattr.${key}`, value));
  }
  if (records.length > 0) {
    const body = new Uint8Array(records.reduce((n, r) => n + r.length, 0));
    let offset = 0;
    for (const r of records) {
      body.set(r, offset);
      offset += r.length;
    }
    await out.write(header("PaxHeaders/" + name.slice(-80), "x", 0o644, 0, 0, body.length, ""));
    await out.write(body);
    await out.write(padding(body.length));
  }
  const shortName = nameBytes > 100 ? name.slice(0, 99) : name;
  const shortLink = linkname.length > 100 ? linkname.slice(0, 99) : linkname;
  await out.write(
    header(shortName, typeflag, entry.mode, entry.uid ?? 0, entry.gid ?? 0, size, shortLink),
  );
  if (entry.type !== "file") return;
  if (entry.data) {
    await out.write(entry.data);
  } else {
    using file = await Deno.open(entry.source!);
    const buffer = new Uint8Array(CHUNK);
    let copied = 0;
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      await out.write(buffer.subarray(0, n));
      copied += n;
    }
    if (copied !== size) {
      throw new TarEntryError(entry.path, `${entry.source} changed size while being copied`);
    }
  }
  await out.write(padding(size));
}

/** Normalises `/a/b/` to `a/b` and rejects paths that escape the root. */
function cleanPath(path: string): string {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0 || parts.includes("..")) {
    throw new TarEntryError(path, "must name something below the root, without '..'");
  }
  return parts.join("/");
}

/**
 * Completes and orders entries: missing parent directories are added (0755, root), duplicates
 * are rejected, and paths are sorted bytewise so a layer's bytes depend only on its content.
 */
export function normaliseEntries(entries: readonly TarEntry[]): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  for (const entry of entries) {
    const path = cleanPath(entry.path);
    if (byPath.has(path)) throw new TarEntryError(entry.path, "listed twice");
    byPath.set(path, { ...entry, path });
  }
  for (const path of [...byPath.keys()]) {
    for (let parent = dirname(path); parent !== "."; parent = dirname(parent)) {
      if (!byPath.has(parent)) byPath.set(parent, { path: parent, type: "dir", mode: 0o755 });
    }
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Writes entries as a tar file (no compression) and returns its digest.
 *
 * @param entries the layer's content; parents are added, order does not matter
 * @param path where to write the tar
 */
export async function writeLayer(entries: readonly TarEntry[], path: string): Promise<LayerBlob> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const out = new HashingWriter(file);
  for (const entry of normaliseEntries(entries)) {
    await writeEntry(out, entry, entry.type === "dir" ? `${entry.path}/` : entry.path);
  }
  await out.write(new Uint8Array(BLOCK * 2));
  return { digest: out.digest(), size: out.size, path };
}

function json(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** The tag (or digest) part of a reference: `3.10` for `registry.k8s.io/pause:3.10`. */
export function referenceTag(ref: string): string {
  const at = ref.indexOf("@");
  if (at >= 0) return ref.slice(at + 1);
  const colon = ref.lastIndexOf(":");
  return colon > ref.lastIndexOf("/") ? ref.slice(colon + 1) : "latest";
}

/** The config, manifest and index an archive holds, with their digests. */
export interface ImageDocuments {
  /** Serialized config blob. */
  config: Uint8Array;
  /** Serialized manifest blob. */
  manifest: Uint8Array;
  /** Serialized index.json. */
  index: Uint8Array;
  /** Digest of `config`. */
  configDigest: string;
  /** Digest of `manifest`. */
  manifestDigest: string;
}

/**
 * Builds the config, manifest and index documents of an image (linux/amd64, created at the epoch).
 * The manifest digest depends only on the layers' digests and the config, so it doubles as the
 * cache key of the archive.
 */
export function imageDocuments(spec: ImageArchiveSpec): ImageDocuments {
  const config = json({
    created: "1970-01-01T00:00:00Z",
    architecture: "amd64",
    os: "linux",
    config: spec.config,
    rootfs: { type: "layers", diff_ids: spec.layers.map((l) => l.digest) },
    history: spec.layers.map((_, i) => ({
      created: "1970-01-01T00:00:00Z",
      created_by: spec.history?.[i] ?? `spire-cacerts tests/harness/images.ts layer ${i}`,
    })),
  });
  const configDigest = sha256Digest(config);
  const manifest = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_MANIFEST,
    config: { mediaType: MEDIA_TYPE_CONFIG, digest: configDigest, size: config.length },
    layers: spec.layers.map((l) => ({
      mediaType: MEDIA_TYPE_LAYER,
      digest: l.digest,
      size: l.size,
    })),
  });
  const manifestDigest = sha256Digest(manifest);
  const index = json({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_INDEX,
    manifests: [{
      mediaType: MEDIA_TYPE_MANIFEST,
      digest: manifestDigest,
      size: manifest.length,
      platform: { architecture: "amd64", os: "linux" },
      annotations: {
        // containerd names the imported image after this one; other tools use ref.name.
        "io.containerd.image.name": spec.ref,
        "org.opencontainers.image.ref.name": referenceTag(spec.ref),
      },
    }],
  });
  return { config, manifest, index, configDigest, manifestDigest };
}

/**
 * Writes an OCI image layout (oci-layout, index.json, blobs/sha256/*) packed as one tar, the
 * format `ctr images import` reads. Written to a temporary name and renamed, so a reader never
 * sees half an archive.
 *
 * @param spec reference, layers (already written) and runtime config
 * @param path the archive to create
 */
export async function writeImageArchive(
  spec: ImageArchiveSpec,
  path: string,
): Promise<ImageArchiveInfo> {
  const docs = imageDocuments(spec);
  const blob = (digest: string) => `blobs/sha256/${digest.slice("sha256:".length)}`;
  const entries: TarEntry[] = [
    { path: "oci-layout", type: "file", mode: 0o644, data: json({ imageLayoutVersion: "1.0.0" }) },
    { path: "index.json", type: "file", mode: 0o644, data: docs.index },
    { path: blob(docs.configDigest), type: "file", mode: 0o644, data: docs.config },
    { path: blob(docs.manifestDigest), type: "file", mode: 0o644, data: docs.manifest },
  ];
  const seen = new Set<string>();
  for (const layer of spec.layers) {
    if (seen.has(layer.digest)) continue;
    seen.add(layer.digest);
    entries.push({ path: blob(layer.digest), type: "file", mode: 0o644, source: layer.path });
  }
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    const written = await writeLayer(entries, tmp);
    await Deno.rename(tmp, path);
    return {
      manifestDigest: docs.manifestDigest,
      configDigest: docs.configDigest,
      size: written.size,
    };
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
}
