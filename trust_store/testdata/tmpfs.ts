/**
 * A scratch directory for tests, on a tmpfs mounted for the test when possible (as root), else
 * a plain temporary directory.
 *
 * @module
 */

import { run } from "./run.ts";

/** A scratch directory and how to remove it. */
export interface Scratch {
  /** The directory. */
  dir: string;
  /** Whether a tmpfs is mounted on it. */
  tmpfs: boolean;
  /** Unmounts (if mounted) and removes the directory. */
  cleanup(): Promise<void>;
}

/** Creates a scratch directory, mounting a tmpfs of `size` on it when the mount works. */
export async function scratchDir(prefix: string, size = "64m"): Promise<Scratch> {
  const dir = await Deno.makeTempDir({ prefix });
  const r = await run("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir])
    .catch(() => ({ code: 1 }));
  const tmpfs = r.code === 0;
  return {
    dir,
    tmpfs,
    async cleanup() {
      if (tmpfs) await run("umount", [dir]);
      await Deno.remove(dir, { recursive: true });
    },
  };
}
