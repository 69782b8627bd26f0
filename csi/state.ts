/**
 * Volume records persisted in the state directory, one JSON file per volume, written atomically
 * (temporary file + rename), so a restarted driver can resume watching and updating its volumes.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import type { ObjectName } from "../api/mod.ts";
import type { PodRef } from "./validation.ts";

/** What the driver remembers about a published volume. */
export interface VolumeRecord {
  /** Record format version. */
  version: 1;
  /** CSI volume id. */
  volumeId: string;
  /** Target path. */
  targetPath: string;
  /** The pod. */
  pod: PodRef;
  /** OS family name. */
  os: string;
  /** CAProviderClasses. */
  classes: ObjectName[];
  /** Whether a tmpfs was mounted at the target. */
  mounted: boolean;
  /**
   * Options the tmpfs was mounted with beside the driver's own size, mode and
   * `nosuid,nodev,noexec`: its SELinux `context=`, if any. Nothing mounts a volume twice today (a
   * restart and a republish keep the tmpfs in place, a resize leaves the context alone); a
   * future re-mount must pass these. Absent in records written before it existed, meaning none.
   */
  mountOptions?: string[];
}

/** A persisted record that could not be read. */
export class StateFileError extends Error {
  /**
   * Makes the error.
   *
   * @param path the file
   * @param cause what went wrong
   */
  constructor(readonly path: string, cause: unknown) {
    super(`volume record ${path} is unreadable: ${String(cause)}`);
    this.name = "StateFileError";
  }
}

/** Where the node server keeps volume records (tests pass an in-memory one). */
export interface VolumeStateStore {
  /** Writes a record, replacing the volume's previous one. */
  save(record: VolumeRecord): Promise<void>;
  /** Removes a volume's record (no error when absent). */
  remove(volumeId: string): Promise<void>;
  /** Reads every record; unreadable ones are returned as errors. */
  loadAll(): Promise<{ records: VolumeRecord[]; errors: StateFileError[] }>;
}

/** The state directory's volume records. */
export class StateStore implements VolumeStateStore {
  readonly #dir: string;

  /**
   * Opens the records of a state directory (nothing is read until {@link StateStore.loadAll}).
   *
   * @param stateDir the `--state-dir`; records live in `<stateDir>/volumes/`
   */
  constructor(stateDir: string) {
    this.#dir = join(stateDir, "volumes");
  }

  #file(volumeId: string): string {
    return join(
      this.#dir,
      createHash("sha256").update(volumeId).digest("hex").slice(0, 32) + ".json",
    );
  }

  /** Writes a record atomically. */
  async save(record: VolumeRecord): Promise<void> {
    await Deno.mkdir(this.#dir, { recursive: true });
    const file = this.#file(record.volumeId);
    const tmp = `${file}.${crypto.randomUUID()}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
    await Deno.rename(tmp, file);
  }

  /** Removes a record (no error when absent). */
  async remove(volumeId: string): Promise<void> {
    await Deno.remove(this.#file(volumeId)).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  /** Reads every record; unreadable files are returned as errors, leftovers `.tmp` are removed. */
  async loadAll(): Promise<{ records: VolumeRecord[]; errors: StateFileError[] }> {
    const records: VolumeRecord[] = [];
    const errors: StateFileError[] = [];
    let entries: Deno.DirEntry[] = [];
    try {
      entries = await Array.fromAsync(Deno.readDir(this.#dir));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return { records, errors };
      throw e;
    }
    for (const entry of entries) {
      const path = join(this.#dir, entry.name);
      if (entry.name.endsWith(".tmp")) {
        await Deno.remove(path).catch(() => {});
        continue;
      }
      if (!entry.name.endsWith(".json")) continue;
      try {
        const record = JSON.parse(await Deno.readTextFile(path)) as VolumeRecord;
        if (record.version !== 1 || !record.volumeId || !record.targetPath) {
          throw new Error("missing fields");
        }
        const options: unknown = record.mountOptions;
        if (
          options !== undefined &&
          !(Array.isArray(options) && options.every((o) => typeof o === "string"))
        ) {
          throw new Error("mountOptions is not a list of strings");
        }
        records.push(record);
      } catch (e) {
        errors.push(new StateFileError(path, e));
      }
    }
    return { records, errors };
  }
}
