/**
 * tmpfs mounts at target paths, with `mount`/`umount` and `/proc/self/mountinfo`, resized in
 * place with `mount -o remount,size=`, behind the {@link Mounter} interface the node server takes (tests pass a fake, as spiffe-csi's `pkg/mount`
 * is swapped in its tests).
 *
 * @module
 */

/** The mount calls the node server makes. */
export interface Mounter {
  /** Whether `path` is a mount point. */
  isMounted(path: string): Promise<boolean>;
  /**
   * Mounts a tmpfs of `size` (e.g. `"8Mi"`) at `path`, with `options` (e.g. an SELinux
   * `context="..."`, see `selinux.ts`) after the driver's own.
   */
  mount(path: string, size: string, options?: readonly string[]): Promise<void>;
  /** Unmounts everything mounted at `path`. */
  unmount(path: string): Promise<void>;
  /**
   * Changes the size of the tmpfs at `path` to `bytes` in place (contents kept). Optional: a
   * mounter without it (a test fake) leaves sizes alone.
   */
  resize?(path: string, bytes: number): Promise<void>;
  /**
   * Mounts the SELinux file system at `dir` (`/sys/fs/selinux`), so that `mount` keeps the
   * volumes' `context=` (see `selinux.ts`); called at most once, when the server starts on an
   * SELinux node with nothing mounted there. Optional: a mounter without it (a test fake) never
   * mounts one.
   */
  mountSelinuxfs?(dir: string): Promise<void>;
}

/** A size flag value is not a size such as `8Mi`, `512Ki` or `1048576`. */
export class SizeSyntaxError extends Error {
  /**
   * Makes the error.
   *
   * @param text the value given
   */
  constructor(readonly text: string) {
    super(`"${text}" is not a size such as 8Mi, 512Ki or 1048576`);
    this.name = "SizeSyntaxError";
  }
}

const SIZE_UNITS: Readonly<Record<string, number>> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * Bytes of a size as `--tmpfs-size` takes it: `1048576`, `512Ki`/`512k`, `8Mi`/`8m`, `1Gi`/`1g`
 * (binary units either way, as tmpfs's `size=` reads them).
 *
 * @throws {SizeSyntaxError}
 */
export function parseSize(text: string): number {
  const m = /^([1-9][0-9]*)([kmg]?)i?$/i.exec(text);
  if (!m || (m[2] === "" && /i$/i.test(text))) throw new SizeSyntaxError(text);
  return Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()];
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

/**
 * Mounts a tmpfs of `size` (e.g. `"4Mi"` or `"4m"`) with mode 0755, `nosuid,nodev,noexec`, at
 * `path`; `options` are appended as given (already checked: an SELinux `context=` whose quoted
 * label may hold commas, which libmount's option parser keeps inside the quotes).
 */
export async function mountTmpfs(
  path: string,
  size: string,
  options: readonly string[] = [],
): Promise<void> {
  const sz = size.replace(/i$/i, "").toLowerCase();
  await run([
    "mount",
    "-t",
    "tmpfs",
    "-o",
    [`size=${sz}`, "mode=0755", "nosuid", "nodev", "noexec", ...options].join(","),
    "tmpfs",
    path,
  ]);
}

/**
 * Resizes the tmpfs at `path` to `bytes` with `mount -o remount,size=`; files stay. Shrinking
 * below what is in use fails (EINVAL) and leaves the size as it was.
 *
 * The SELinux context of a tmpfs mounted with `context=` is left alone, and deliberately not
 * passed here: a context belongs to the superblock and cannot change on a remount (the kernel
 * refuses a different one, and a context on a remount of a mount that had none), while a remount
 * that names none keeps it. util-linux's `mount` prepends the mount's current options from
 * `/proc/self/mountinfo` to a remount's, which then carry the same context; the kernel accepts a
 * remount repeating the context it has. Passing it here too would name it twice.
 */
export async function resizeTmpfs(path: string, bytes: number): Promise<void> {
  await run(["mount", "-o", `remount,size=${bytes}`, path]);
}

/**
 * Mounts selinuxfs at `dir` with `mount -t selinuxfs selinuxfs <dir>` (read-write, as libselinux
 * wants it; in the driver's own mount namespace, a privileged container's).
 */
export async function mountSelinuxfs(dir: string): Promise<void> {
  await run(["mount", "-t", "selinuxfs", "selinuxfs", dir]);
}

/** Unmounts `path` (every stacked mount there). */
export async function unmount(path: string): Promise<void> {
  while (await isMountPoint(path)) await run(["umount", path]);
}

/**
 * The host's mounts: {@link isMountPoint}, {@link mountTmpfs}, {@link unmount},
 * {@link resizeTmpfs} and {@link mountSelinuxfs}.
 */
export const hostMounter: Mounter = {
  isMounted: isMountPoint,
  mount: mountTmpfs,
  unmount,
  resize: resizeTmpfs,
  mountSelinuxfs,
};
