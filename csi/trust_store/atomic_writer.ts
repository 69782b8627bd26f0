/**
 * Atomic replacement of a whole directory of files with Kubernetes AtomicWriter semantics
 * (`pkg/volume/util/atomic_writer.go`): the payload is written into a new hidden timestamped
 * directory (`..2026_11_28_15_04_05.123456789`), a `..data_tmp` symlink to it is renamed over
 * `..data` (one atomic rename), and every top-level entry (`ca-certificates.crt`, `java`, ...)
 * is a symlink through `..data/`. A reader resolving paths through the top-level entries sees
 * the old set or the new set, never a mix. Unchanged content is a no-op. Leftovers of a crash
 * (`..data_tmp`, orphaned `..` directories, half-made links) are removed before the next write.
 *
 * Consistency as readers see it: each file opened through a top-level entry is wholly old or
 * wholly new; a reader that needs several files from one generation resolves `..data` once and
 * reads under it (two separate opens through the links may straddle a swap, as with every
 * Kubernetes Secret or ConfigMap volume).
 *
 * @module
 */

import { closeSync, fsyncSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { PayloadPathError } from "./errors.ts";

const DATA = "..data";
const DATA_TMP = "..data_tmp";
const LINK_TMP_PREFIX = "..link_tmp.";

/** Outcome of {@link AtomicWriter.write}. */
export interface WriteResult {
  /** False when the directory already held exactly this payload (nothing was written). */
  changed: boolean;
}

/** Options of {@link AtomicWriter}. */
export interface AtomicWriterOptions {
  /** File mode of written files (default 0o644). */
  fileMode?: number;
  /** fsync files and directories before the swap (default true). */
  fsync?: boolean;
}

function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function timestampPrefix(now = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `..${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}_` +
    `${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.`;
}

/**
 * Checks payload paths: relative, `/`-separated, no empty, `.` or `..` components, no top-level
 * name starting with `..` (reserved for the writer), and no path that is both a file and a
 * directory.
 *
 * @throws {PayloadPathError}
 */
export function validatePayloadPaths(paths: Iterable<string>): Set<string> {
  const files = new Set<string>();
  const dirs = new Set<string>();
  for (const path of paths) {
    if (path.length === 0 || path.startsWith("/")) {
      throw new PayloadPathError(path, "must be a non-empty relative path");
    }
    if (path.includes("\\") || path.includes("\0")) {
      throw new PayloadPathError(path, "must not contain backslashes or NUL");
    }
    const parts = path.split("/");
    if (parts.some((p) => p === "" || p === "." || p === "..")) {
      throw new PayloadPathError(path, "must not contain empty, '.' or '..' components");
    }
    if (parts[0].startsWith("..")) {
      throw new PayloadPathError(path, "top-level names starting with '..' are reserved");
    }
    files.add(path);
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  for (const f of files) {
    if (dirs.has(f)) throw new PayloadPathError(f, "is both a file and a directory");
  }
  return files;
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

function readTree(root: string, prefix = "", out = new Map<string, string>()) {
  for (const entry of Deno.readDirSync(join(root, prefix))) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) readTree(root, rel, out);
    else out.set(rel, join(root, rel));
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Writes payloads into one directory atomically. One writer per directory at a time. */
export class AtomicWriter {
  /** The target directory (usually the volume's mount point). */
  readonly dir: string;
  #fileMode: number;
  #fsync: boolean;

  /**
   * @param dir the target directory; it must exist
   * @param options file mode and fsync
   */
  constructor(dir: string, options: AtomicWriterOptions = {}) {
    this.dir = dir;
    this.#fileMode = options.fileMode ?? 0o644;
    this.#fsync = options.fsync ?? true;
  }

  /** The name of the directory `..data` points at, if any. */
  async #current(): Promise<string | undefined> {
    try {
      return await Deno.readLink(join(this.dir, DATA));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
  }

  /** Removes `..data_tmp`, half-made link renames and `..` directories `..data` does not use. */
  async #cleanup(current: string | undefined): Promise<void> {
    for await (const entry of Deno.readDir(this.dir)) {
      const name = entry.name;
      if (!name.startsWith("..") || name === DATA || name === current) continue;
      Deno.removeSync(join(this.dir, name), { recursive: true });
    }
  }

  #sameContent(current: string, files: Set<string>, payload: Map<string, Uint8Array>): boolean {
    let tree: Map<string, string>;
    try {
      tree = readTree(join(this.dir, current));
    } catch {
      return false;
    }
    if (tree.size !== files.size) return false;
    for (const [rel, abs] of tree) {
      const want = payload.get(rel);
      if (!want || !equalBytes(Deno.readFileSync(abs), want)) return false;
    }
    return true;
  }

  /** Points every top-level entry through `..data/` and removes entries no longer in the payload. */
  async #syncLinks(top: Set<string>): Promise<void> {
    for (const name of top) {
      const path = join(this.dir, name);
      const target = `${DATA}/${name}`;
      let ok = false;
      try {
        ok = (await Deno.readLink(path)) === target;
      } catch { /* missing or not a link */ }
      if (ok) continue;
      const tmp = join(this.dir, LINK_TMP_PREFIX + name);
      await Deno.remove(tmp).catch(() => {});
      await Deno.symlink(target, tmp);
      try {
        const st = await Deno.lstat(path);
        if (st.isDirectory) await Deno.remove(path, { recursive: true });
      } catch { /* missing */ }
      await Deno.rename(tmp, path);
    }
    for await (const entry of Deno.readDir(this.dir)) {
      if (entry.name.startsWith("..") || top.has(entry.name)) continue;
      await Deno.remove(join(this.dir, entry.name), { recursive: true });
    }
  }

  /**
   * Writes the payload under `tsDir`. Synchronous calls on purpose: a store is a few hundred
   * small files, and per-call async overhead made a swap ~5× slower than the I/O itself.
   */
  #fill(tsDir: string, payload: Map<string, Uint8Array>): void {
    const dirs = new Set<string>([tsDir]);
    for (const [rel, bytes] of payload) {
      const abs = join(tsDir, rel);
      const parent = dirname(abs);
      if (!dirs.has(parent)) {
        Deno.mkdirSync(parent, { recursive: true, mode: 0o755 });
        dirs.add(parent);
      }
      const file = Deno.openSync(abs, { write: true, createNew: true, mode: this.#fileMode });
      try {
        let off = 0;
        while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
        if (this.#fsync) file.syncSync();
      } finally {
        file.close();
      }
      Deno.chmodSync(abs, this.#fileMode);
    }
    if (this.#fsync) { for (const d of dirs) fsyncPath(d); }
  }

  /**
   * Makes the directory hold exactly `payload` (path relative to the directory → bytes).
   *
   * @returns whether anything changed
   * @throws {PayloadPathError} for an invalid path, before anything is touched
   * @throws {Deno.errors} from the file system (e.g. a full tmpfs); the live store is unchanged
   */
  async write(payload: Map<string, Uint8Array>): Promise<WriteResult> {
    const files = validatePayloadPaths(payload.keys());
    const top = new Set([...files].map((f) => f.split("/")[0]));
    const current = await this.#current();
    await this.#cleanup(current);
    if (current !== undefined && this.#sameContent(current, files, payload)) {
      await this.#syncLinks(top);
      return { changed: false };
    }
    const tsDir = await Deno.makeTempDir({ dir: this.dir, prefix: timestampPrefix() });
    const tsName = tsDir.slice(tsDir.lastIndexOf("/") + 1);
    await Deno.chmod(tsDir, 0o755);
    try {
      this.#fill(tsDir, payload);
    } catch (e) {
      // e.g. ENOSPC on a full tmpfs: drop the half-written directory, keep the live one.
      try {
        Deno.removeSync(tsDir, { recursive: true });
      } catch { /* the next write's cleanup removes it */ }
      throw e;
    }
    const tmpLink = join(this.dir, DATA_TMP);
    await Deno.symlink(tsName, tmpLink);
    await Deno.rename(tmpLink, join(this.dir, DATA));
    if (this.#fsync) fsyncPath(this.dir);
    await this.#syncLinks(top);
    if (current !== undefined && current !== tsName) {
      try {
        Deno.removeSync(join(this.dir, current), { recursive: true });
      } catch { /* already gone; the next write's cleanup retries anything left */ }
    }
    if (this.#fsync) fsyncPath(this.dir);
    return { changed: true };
  }

  /** Removes everything the writer made (and anything else), leaving the directory empty. */
  async clear(): Promise<void> {
    if (!(await exists(this.dir))) return;
    const names: string[] = [];
    for await (const entry of Deno.readDir(this.dir)) names.push(entry.name);
    // User-visible links first, then the swap link, then the data directories.
    names.sort((a, b) => rank(a) - rank(b));
    for (const name of names) await Deno.remove(join(this.dir, name), { recursive: true });
    if (this.#fsync) fsyncPath(this.dir);
  }
}

function rank(name: string): number {
  return !name.startsWith("..") ? 0 : name === DATA || name === DATA_TMP ? 1 : 2;
}
