/**
 * Layers shared by the local images: content hashes, the libraries a program links, the base
 * layer distroless images carry (users, /tmp, the CA bundle) and a layer cache keyed by content.
 * Used by `images.ts` (images assembled from built binaries) and `containerfile_images.ts` (the
 * base images the project's Containerfiles build on).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { runCommand } from "./process.ts";
import { type LayerBlob, type TarEntry, writeLayer } from "./oci_archive.ts";

/** Thrown when an image cannot be built; the message names the missing part or failed step. */
export class ImageBuildError extends Error {
  /** @param message what is missing or failed, and how to fix it */
  constructor(message: string) {
    super(message);
    this.name = "ImageBuildError";
  }
}

const fileHashes = new Map<string, { mtime: number; size: number; hash: string }>();

/** SHA-256 of a file's content, hex, read in 1 MiB chunks (image inputs reach ~100 MB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buffer = new Uint8Array(1 << 20);
  while (true) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

/** {@link sha256File}, remembered per path while its mtime and size stay the same. */
export async function fileHash(path: string): Promise<string> {
  const info = await Deno.stat(path);
  const mtime = info.mtime?.getTime() ?? 0;
  const known = fileHashes.get(path);
  if (known && known.mtime === mtime && known.size === info.size) return known.hash;
  const hex = await sha256File(path);
  fileHashes.set(path, { mtime, size: info.size, hash: hex });
  return hex;
}

/**
 * The loader and libraries a dynamically linked program needs, at the paths `ldd` prints (the
 * loader's built-in search path finds them there without an ld.so.cache). Empty for static
 * programs.
 */
export async function sharedLibraries(binary: string): Promise<TarEntry[]> {
  const out = await runCommand(["ldd", binary]);
  if (out.code !== 0) {
    if (/not a dynamic executable|statically linked/.test(out.stdout + out.stderr)) return [];
    throw new ImageBuildError(`ldd ${binary} exited ${out.code}: ${out.stderr.trim()}`);
  }
  const entries: TarEntry[] = [];
  for (const line of out.stdout.split("\n")) {
    const match = /^\s*(?:\S+ => )?(\/\S+) \(0x[0-9a-f]+\)/.exec(line);
    if (!match) {
      if (/not found/.test(line)) throw new ImageBuildError(`ldd ${binary}: ${line.trim()}`);
      continue;
    }
    entries.push({
      path: match[1],
      type: "file",
      mode: 0o755,
      source: await Deno.realPath(match[1]),
    });
  }
  return entries;
}

/** Entries of several lists, one per path (the last wins). */
export function unionByPath(lists: TarEntry[][]): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  for (const list of lists) for (const entry of list) byPath.set(entry.path, entry);
  return [...byPath.values()];
}

/** A layer to write: a name for history and its entries. */
export interface LayerPlan {
  /** Shown in the image history. */
  name: string;
  /** What the layer holds. */
  entries: TarEntry[];
}

const encoder = new TextEncoder();
/** UTF-8 bytes of a string. */
export const text = (s: string) => encoder.encode(s);

/** The PATH the images set. */
export const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * What distroless/static gives: users root, nobody, nonroot (65532), /tmp, the Debian CA bundle
 * and the dpkg record of its version (the CSI driver's "bundled" base roots report it).
 */
export async function baseLayer(): Promise<LayerPlan> {
  const caBundle = "/etc/ssl/certs/ca-certificates.crt";
  try {
    await Deno.stat(caBundle);
  } catch {
    throw new ImageBuildError(
      `${caBundle} is missing on this machine; install Debian's ca-certificates (the images ` +
        "carry it as distroless does)",
    );
  }
  const entries: TarEntry[] = [
    {
      path: "/etc/passwd",
      type: "file",
      mode: 0o644,
      data: text(
        "root:x:0:0:root:/root:/sbin/nologin\n" +
          "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
          "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
      ),
    },
    {
      path: "/etc/group",
      type: "file",
      mode: 0o644,
      data: text("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"),
    },
    { path: "/etc/nsswitch.conf", type: "file", mode: 0o644, data: text("hosts: files dns\n") },
    { path: "/etc/ssl/certs", type: "dir", mode: 0o755 },
    { path: caBundle, type: "file", mode: 0o644, source: caBundle },
    { path: "/tmp", type: "dir", mode: 0o1777 },
    { path: "/root", type: "dir", mode: 0o700 },
    { path: "/home/nonroot", type: "dir", mode: 0o700, uid: 65532, gid: 65532 },
  ];
  const status = await runCommand(["dpkg-query", "-s", "ca-certificates"]);
  if (status.code === 0) {
    const stanza = status.stdout.split("\n").filter((l) =>
      /^(Package|Version|Architecture):/.test(l)
    );
    entries.push({
      path: "/var/lib/dpkg/status.d/ca-certificates",
      type: "file",
      mode: 0o644,
      data: text(stanza.join("\n") + "\n"),
    });
  }
  return { name: "base: users, /tmp, CA bundle", entries };
}

/** One layer with the loader and libraries the binaries link (none for static ones). */
export async function libsLayer(binaries: string[]): Promise<LayerPlan[]> {
  const libs = unionByPath(await Promise.all(binaries.map(sharedLibraries)));
  return libs.length === 0
    ? []
    : [{ name: `glibc: ${libs.map((l) => basename(l.path)).join(" ")}`, entries: libs }];
}

/**
 * Writes a layer once per content: the key hashes every entry (file contents by hash), so an
 * unchanged input gives the same digest and the cached tar is reused.
 *
 * @param layersDir cache directory of layer tars
 * @param plan the layer's name and entries
 * @param log progress lines
 */
export async function cachedLayer(
  layersDir: string,
  plan: LayerPlan,
  log: (s: string) => void,
): Promise<LayerBlob> {
  const key = createHash("sha256");
  for (const entry of [...plan.entries].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    key.update(JSON.stringify({
      ...entry,
      source: entry.source ? await fileHash(entry.source) : undefined,
      data: entry.data ? createHash("sha256").update(entry.data).digest("hex") : undefined,
      xattrs: entry.xattrs
        ? Object.fromEntries(Object.entries(entry.xattrs).map(([k, v]) => [k, [...v]]))
        : undefined,
    }));
    key.update("\n");
  }
  const name = key.digest("hex");
  const path = join(layersDir, `${name}.tar`);
  const meta = join(layersDir, `${name}.json`);
  try {
    const blob = JSON.parse(await Deno.readTextFile(meta)) as LayerBlob;
    if ((await Deno.stat(path)).size === blob.size) return { ...blob, path };
  } catch {
    // Not cached yet.
  }
  log(`images: writing layer ${plan.name}`);
  const tmp = `${path}.tmp-${Deno.pid}`;
  const blob = await writeLayer(plan.entries, tmp);
  await Deno.rename(tmp, path);
  await Deno.writeTextFile(meta, JSON.stringify({ digest: blob.digest, size: blob.size }));
  return { ...blob, path };
}
