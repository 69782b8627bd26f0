/**
 * SELinux for the volumes' tmpfs: which of kubelet's `volume_capability.mount.mount_flags` the
 * driver accepts, the SELinux mount options they and the node give a tmpfs, and the probe that
 * tells whether the node has SELinux.
 *
 * With `seLinuxMount: true` on the CSIDriver, kubelet passes one flag
 * `context="system_u:object_r:container_file_t:s0:c1,c2"` for a pod with an explicit SELinux
 * label (`spec.securityContext.seLinuxOptions`); it goes to the mount unchanged, so the files
 * carry the pod's label. For every other pod kubelet passes no context and the runtime would
 * relabel the volume, which it cannot do to files the driver owns and writes; with SELinux on
 * the node the tmpfs is then mounted with {@link DEFAULT_SELINUX_CONTEXT}
 * (`container_file_t` at level `s0`, which every container may read). Without SELinux no context
 * is added: the kernel refuses `context=` then.
 *
 * Whether the node has SELinux is read from the kernel, not from the driver's mounts: a container
 * gets a fresh `/sys` in which the node's SELinux file system is usually not mounted. The kernel
 * registers the `selinuxfs` file system type, and so lists it in `/proc/filesystems`, only when
 * SELinux is enabled at boot: `init_sel_fs` in Linux's `security/selinux/selinuxfs.c` returns
 * before `sysfs_create_mount_point(fs_kobj, "selinux")` and `register_filesystem(&sel_fs_type)`
 * when `!selinux_enabled_boot` (`selinux_enabled` in older kernels). So SELinux is taken as
 * enabled when `/proc/filesystems` lists `selinuxfs` or `/sys/fs/selinux/enforce` exists
 * ({@link kernelHasSelinux}, {@link selinuxfsMounted}).
 *
 * util-linux `mount(8)`, built with libselinux, removes every SELinux option (`context=` among
 * them) when libselinux's `is_selinux_enabled()` is 0 (libmount's `hook_selinux.c`, before 2.39
 * `fix_optstr` in `context_mount.c`: "Always remove SELinux garbage if SELinux disabled"). That is
 * `selinux_mnt && has_selinux_config` (libselinux `enabled.c`), where `selinux_mnt` is set only for
 * a selinuxfs mounted read-write (`verify_selinuxmnt` in `init.c`) and `has_selinux_config` is
 * whether `/etc/selinux/config` exists. So at start {@link prepareSelinux} mounts selinuxfs at
 * `/sys/fs/selinux` when the kernel has SELinux and nothing is mounted there (the directory is
 * sysfs's mount point, present exactly then), and warns when it cannot, or when
 * `/etc/selinux/config` is missing: `mount(8)` may then drop the context and pods with confined
 * labels may not read their volumes. The image ships a comment-only `/etc/selinux/config` for
 * this (`images/csi.Containerfile`).
 *
 * Accepted flags: at most one `context=` whose value is an SELinux label `user:role:type:level`
 * (letters, digits, `_` `.` `-` in each part; the level may hold `:` `,` `.` `-`, e.g.
 * `s0-s0:c0.c1023`), quoted or, when it has no comma, unquoted; and `ro`, which the driver
 * already requires as the request's `readonly` and which leaves the tmpfs itself writable by the
 * driver (containers see it through kubelet's read-only bind mount). Every other flag is refused:
 * `exec`, `suid` or `dev` would undo the tmpfs's `noexec,nosuid,nodev`, `size=` and `mode=` are
 * the driver's, the other SELinux options (`fscontext=`, `defcontext=`, `rootcontext=`) are not
 * what kubelet sends, and a comma outside the quoted label would smuggle in more options.
 *
 * @module
 */

import { join } from "node:path";
import { LOG_KEYS, type Logger } from "../cli/mod.ts";

/** The context a tmpfs gets when SELinux is on and kubelet passes none: readable by containers. */
export const DEFAULT_SELINUX_CONTEXT = "system_u:object_r:container_file_t:s0";

/** Where the SELinux file system is mounted when SELinux is enabled. */
export const SELINUXFS_PATH = "/sys/fs/selinux";

/** The kernel's list of registered file system types. */
export const PROC_FILESYSTEMS = "/proc/filesystems";

/** libselinux's configuration; without it libselinux takes SELinux as disabled. */
export const SELINUX_CONFIG = "/etc/selinux/config";

/** A mount flag from kubelet that the driver does not accept. */
export class MountFlagError extends Error {
  /**
   * Makes the error.
   *
   * @param flag the flag as given
   * @param reason why it is refused
   */
  constructor(readonly flag: string, reason: string) {
    super(`mount flag ${JSON.stringify(flag)} is refused: ${reason}`);
    this.name = "MountFlagError";
  }
}

/** The mount flags kubelet passed, once checked by {@link parseMountFlags}. */
export interface MountFlags {
  /** The `context=` flag exactly as given (quotes kept), when there is one. */
  context?: string;
}

/** One part of a label (user, role, type). */
const PART = "[A-Za-z0-9_.-]+";
/** The MLS/MCS level, e.g. `s0`, `s0:c1,c2`, `s0-s0:c0.c1023`. */
const LEVEL = "[A-Za-z0-9_.-]+(?:[:,][A-Za-z0-9_.-]+)*";
const QUOTED = new RegExp(`^context="${PART}:${PART}:${PART}:${LEVEL}"$`);
const UNQUOTED = new RegExp(`^context=${PART}:${PART}:${PART}:[A-Za-z0-9_.:-]+$`);

/** Flags accepted and ignored (see the module documentation). */
const IGNORED: ReadonlySet<string> = new Set(["ro"]);

function checkContext(flag: string): void {
  if (QUOTED.test(flag) || UNQUOTED.test(flag)) return;
  // What is left outside a quoted part: a comma there ends the option and starts another.
  const outside = flag.slice("context=".length).replace(/"[^"]*"/, "");
  if (outside.includes(",")) {
    throw new MountFlagError(
      flag,
      "a comma outside a quoted label would add other mount options; quote the label " +
        '(context="user:role:type:level")',
    );
  }
  throw new MountFlagError(
    flag,
    "the value is not an SELinux label user:role:type:level (letters, digits, _ . - in each " +
      'part, the level may also hold : and ,), quoted as context="..." or unquoted without commas',
  );
}

/**
 * Checks kubelet's mount flags: at most one `context=` holding an SELinux label, and `ro`;
 * anything else is refused (see the module documentation).
 *
 * @param flags `volume_capability.mount.mount_flags`
 * @returns the context flag, verbatim, if any
 * @throws {MountFlagError} naming the first flag refused
 */
export function parseMountFlags(flags: readonly string[]): MountFlags {
  const result: MountFlags = {};
  for (const flag of flags) {
    if (IGNORED.has(flag)) continue;
    if (flag.startsWith("context=")) {
      checkContext(flag);
      if (result.context !== undefined) {
        throw new MountFlagError(
          flag,
          `only one context= flag is allowed, ${result.context} came first`,
        );
      }
      result.context = flag;
      continue;
    }
    if (flag.trim() === "") throw new MountFlagError(flag, "the flag is empty");
    throw new MountFlagError(
      flag,
      "the driver accepts only one SELinux context= flag (kubelet's, with seLinuxMount) and ro; " +
        "the tmpfs is always mounted nosuid,nodev,noexec with the driver's own size and mode",
    );
  }
  return result;
}

/** What {@link tmpfsMountOptions} knows about the node. */
export interface SelinuxSettings {
  /** Whether the node has SELinux enabled (see {@link prepareSelinux}). */
  enabled: boolean;
  /** The context for a mount without kubelet's (default {@link DEFAULT_SELINUX_CONTEXT}). */
  defaultContext?: string;
}

/**
 * The SELinux mount options a volume's tmpfs gets, beside the driver's own size, mode and
 * `nosuid,nodev,noexec`: kubelet's `context=` flag unchanged; else, when SELinux is enabled,
 * `context="<default>"`; else none. A context cannot be changed by a remount, so these are for
 * the first mount only.
 *
 * @param mountFlags kubelet's `volume_capability.mount.mount_flags`
 * @param selinux whether the node has SELinux, and the default context
 * @returns the options to add, each one mount option (`[]` or one `context=`)
 * @throws {MountFlagError} when a flag is refused (see {@link parseMountFlags})
 */
export function tmpfsMountOptions(
  mountFlags: readonly string[],
  selinux: SelinuxSettings,
): string[] {
  const { context } = parseMountFlags(mountFlags);
  if (context !== undefined) return [context];
  if (!selinux.enabled) return [];
  return [`context="${selinux.defaultContext ?? DEFAULT_SELINUX_CONTEXT}"`];
}

/** The SELinux file system could not be inspected (anything but its absence). */
export class SelinuxProbeError extends Error {
  /**
   * Makes the error.
   *
   * @param path the file looked for
   * @param cause what went wrong
   */
  constructor(readonly path: string, cause: unknown) {
    super(`cannot tell whether SELinux is enabled: ${path}: ${String(cause)}`, { cause });
    this.name = "SelinuxProbeError";
  }
}

/**
 * Whether SELinux is enabled: the SELinux file system is mounted, i.e. `<dir>/enforce` exists
 * (how libselinux's `is_selinux_enabled` decides, which also wants that mount writable).
 * Synchronous, for a single look when the driver starts.
 *
 * @param dir where selinuxfs is mounted (default {@link SELINUXFS_PATH}; tests pass a temporary
 *   directory)
 * @throws {SelinuxProbeError} when the file cannot be inspected for another reason than absence
 */
export function selinuxfsMounted(dir: string = SELINUXFS_PATH): boolean {
  const path = join(dir, "enforce");
  try {
    return Deno.statSync(path).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw new SelinuxProbeError(path, error);
  }
}

/**
 * Whether the kernel has SELinux enabled: `/proc/filesystems` lists `selinuxfs` (registered only
 * when SELinux is enabled at boot, see the module documentation). Works inside a container,
 * whatever is mounted in its `/sys`. Synchronous, for a single look when the driver starts.
 *
 * @param path the file system list (default {@link PROC_FILESYSTEMS}; tests pass a temporary
 *   file)
 * @returns `false` also when the list does not exist (not Linux, or no `/proc`)
 * @throws {SelinuxProbeError} when the list cannot be read for another reason than absence
 */
export function kernelHasSelinux(path: string = PROC_FILESYSTEMS): boolean {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw new SelinuxProbeError(path, error);
  }
  // Lines are `nodev\tselinuxfs`, `\text4`: an optional flag, a tab, the type.
  return text.split("\n").some((line) => line.split("\t").at(-1)?.trim() === "selinuxfs");
}

/** What {@link prepareSelinux} reads, mounts and logs to. */
export interface PrepareSelinuxOptions {
  /** Mounts selinuxfs at the directory given (`mount -t selinuxfs selinuxfs <dir>`); absent: never. */
  mountSelinuxfs?: (dir: string) => Promise<void>;
  /** Where the warnings and the mount go. */
  logger: Pick<Logger, "info" | "warn">;
  /** Default {@link PROC_FILESYSTEMS}. */
  procFilesystems?: string;
  /** Default {@link SELINUXFS_PATH}. */
  selinuxfs?: string;
  /** Default {@link SELINUX_CONFIG}. */
  selinuxConfig?: string;
}

/** What happens to a volume when `mount(8)` drops its context (the warnings' last words). */
const CONSEQUENCE = "mount(8) may drop the context= option of the volumes' tmpfs, and pods with " +
  "confined SELinux labels may then not read their volumes";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Decides, once when the driver starts, whether the node has SELinux, and makes `mount(8)` see it:
 * with selinuxfs already mounted at `selinuxfs` it only reports `true`; with a kernel whose
 * `/proc/filesystems` lists no `selinuxfs` it reports `false` and mounts nothing; with a kernel
 * that has SELinux but nothing mounted there it mounts selinuxfs there (the driver runs
 * privileged, as root, in its own mount namespace) and reports `true`, also when that mount fails
 * (then with a warning naming the consequence). A missing `/etc/selinux/config` on an SELinux
 * node is warned about too. See the module documentation.
 *
 * @param options the mount call, the logger and the paths (tests pass temporary ones)
 * @returns whether SELinux is enabled (the tmpfs then gets a context)
 * @throws {SelinuxProbeError} when a probed path cannot be inspected
 */
export async function prepareSelinux(options: PrepareSelinuxOptions): Promise<boolean> {
  const { logger, mountSelinuxfs } = options;
  const dir = options.selinuxfs ?? SELINUXFS_PATH;
  const mounted = selinuxfsMounted(dir);
  if (!mounted && !kernelHasSelinux(options.procFilesystems)) return false;
  if (!mounted) {
    if (!mountSelinuxfs) {
      logger.warn(`SELinux is enabled but ${dir} is not mounted; ${CONSEQUENCE}`, { path: dir });
    } else {
      try {
        await mountSelinuxfs(dir);
        if (selinuxfsMounted(dir)) {
          logger.info("mounted the SELinux file system for mount(8)", { path: dir });
        } else {
          logger.warn(
            `SELinux is enabled; mounted selinuxfs at ${dir} but ${join(dir, "enforce")} is ` +
              `missing; ${CONSEQUENCE}`,
            { path: dir },
          );
        }
      } catch (error) {
        logger.warn(
          `SELinux is enabled but selinuxfs could not be mounted at ${dir}; ${CONSEQUENCE}`,
          { path: dir, [LOG_KEYS.error]: error instanceof Error ? error.message : String(error) },
        );
      }
    }
  }
  const config = options.selinuxConfig ?? SELINUX_CONFIG;
  if (!exists(config)) {
    logger.warn(
      `SELinux is enabled but ${config} is missing, so libselinux takes SELinux as disabled; ` +
        CONSEQUENCE,
      { path: config },
    );
  }
  return true;
}
