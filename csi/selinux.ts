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

/** The context a tmpfs gets when SELinux is on and kubelet passes none: readable by containers. */
export const DEFAULT_SELINUX_CONTEXT = "system_u:object_r:container_file_t:s0";

/** Where the SELinux file system is mounted when SELinux is enabled. */
export const SELINUXFS_PATH = "/sys/fs/selinux";

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
  /** Whether the node has SELinux enabled (see {@link selinuxfsMounted}). */
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
