/**
 * tmpfs mounts at target paths, with `mount`/`umount` and `/proc/self/mountinfo`, behind the
 * {@link Mounter} interface the node server takes (tests pass a fake, as spiffe-csi's `pkg/mount`
 * is swapped in its tests).
 *
 * @module
 */

/** The mount calls the node server makes. */
export interface Mounter {
  /** Whether `path` is a mount point. */
  isMounted(path: string): Promise<boolean>;
  /** Mounts a tmpfs of `size` (e.g. `"8Mi"`) at `path`. */
  mount(path: string, size: string): Promise<void>;
  /** Unmounts everything mounted at `path`. */
  unmount(path: string): Promise<void>;
}

/** A mount or unmount command failed. */
export class MountError extends Error {
  /**
   * Makes the error.
   *
   * @param message the command and its output
   */
  constructor(message: string) {
    super(message);
    this.name = "MountError";
  }
}

async function run(args: string[]): Promise<void> {
  const out = await new Deno.Command(args[0], {
    args: args.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr).trim();
    throw new MountError(`${args.join(" ")} failed (exit ${out.code}): ${text}`);
  }
}

function unescapeMountinfo(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct) => String.fromCharCode(parseInt(oct, 8)));
}

/** Whether `path` is a mount point (per `/proc/self/mountinfo`). */
export async function isMountPoint(path: string): Promise<boolean> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  for (const line of text.split("\n")) {
    const field = line.split(" ")[4];
    if (field && unescapeMountinfo(field) === path) return true;
  }
  return false;
}

/** Mounts a tmpfs of `size` (e.g. `"4Mi"` or `"4m"`) with mode 0755 at `path`. */
export async function mountTmpfs(path: string, size: string): Promise<void> {
  const sz = size.replace(/i$/i, "").toLowerCase();
  await run([
    "mount",
    "-t",
    "tmpfs",
    "-o",
    `size=${sz},mode=0755,nosuid,nodev,noexec`,
    "tmpfs",
    path,
  ]);
}

/** Unmounts `path` (every stacked mount there). */
export async function unmount(path: string): Promise<void> {
  while (await isMountPoint(path)) await run(["umount", path]);
}

/** The host's mounts: {@link isMountPoint}, {@link mountTmpfs} and {@link unmount}. */
export const hostMounter: Mounter = {
  isMounted: isMountPoint,
  mount: mountTmpfs,
  unmount,
};
