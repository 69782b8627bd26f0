/**
 * A Debian bookworm root filesystem with real TLS consumers (curl, openssl, python3, the distro
 * JDK), made with `debootstrap` from the archive this machine reaches and cached as a directory
 * under `~/.cache/spire-cacerts/debian-userland/<key>`, where the key is the hash of the suite,
 * mirror, variant and package list (so a changed list builds a new one). Concurrent builds wait
 * on a file lock; a finished tree is marked by a `complete.json` stamp written last. Root only.
 *
 * @module
 */

import { join } from "node:path";

/** The suite debootstrap installs. */
export const DEBIAN_USERLAND_SUITE = "bookworm";
/** The archive debootstrap reads. */
export const DEBIAN_USERLAND_MIRROR = "http://deb.debian.org/debian";
/** Packages added to `minbase`: the TLS consumers the userland test runs. */
export const DEBIAN_USERLAND_PACKAGES: readonly string[] = [
  "ca-certificates",
  "curl",
  "openjdk-17-jre-headless",
  "openssl",
  "python3",
];

/** debootstrap failed, or the cache could not be written. */
export class DebianRootfsError extends Error {
  /**
   * Makes the error.
   *
   * @param message what failed, with the command's output
   * @param options the underlying error
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DebianRootfsError";
  }
}

/** A cached root filesystem. */
export interface DebianRootfs {
  /** The root directory (chroot into it; do not modify it). */
  dir: string;
  /** Whether this call built it (false: reused from the cache). */
  built: boolean;
  /** Seconds the debootstrap took (when built). */
  buildSeconds?: number;
}

/** Where the root filesystems are cached: `$SPIRE_CACERTS_ROOTFS_DIR` or ~/.cache/spire-cacerts/debian-userland. */
export function debianRootfsCacheDir(): string {
  return Deno.env.get("SPIRE_CACERTS_ROOTFS_DIR") ??
    join(Deno.env.get("HOME") ?? "/root", ".cache", "spire-cacerts", "debian-userland");
}

/** The cache key: a hash of everything that decides the tree's content. */
export async function debianRootfsKey(packages: readonly string[]): Promise<string> {
  const text = JSON.stringify({
    suite: DEBIAN_USERLAND_SUITE,
    mirror: DEBIAN_USERLAND_MIRROR,
    variant: "minbase",
    packages: [...packages].sort(),
  });
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("").slice(
    0,
    16,
  );
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

/**
 * Returns the cached root filesystem with `packages`, building it with debootstrap when missing
 * (a few minutes; the JDK is most of it).
 *
 * @param packages packages added to `minbase`
 * @param log progress lines
 */
export async function debianRootfs(
  packages: readonly string[] = DEBIAN_USERLAND_PACKAGES,
  log: (line: string) => void = () => {},
): Promise<DebianRootfs> {
  const base = join(debianRootfsCacheDir(), await debianRootfsKey(packages));
  const dir = join(base, "rootfs");
  const stamp = join(base, "complete.json");
  await Deno.mkdir(base, { recursive: true });
  const lock = await Deno.open(join(base, ".lock"), { create: true, write: true });
  try {
    await lock.lock(true);
    if (await exists(stamp)) return { dir, built: false };
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    log(`debootstrap ${DEBIAN_USERLAND_SUITE} + ${packages.join(",")} (once; several minutes)`);
    const started = performance.now();
    const out = await new Deno.Command("debootstrap", {
      args: [
        "--variant=minbase",
        `--include=${[...packages].sort().join(",")}`,
        DEBIAN_USERLAND_SUITE,
        dir,
        DEBIAN_USERLAND_MIRROR,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output().catch((cause) => {
      throw new DebianRootfsError(`debootstrap could not run (install debootstrap)`, { cause });
    });
    if (!out.success) {
      const dec = new TextDecoder();
      throw new DebianRootfsError(
        `debootstrap ${DEBIAN_USERLAND_SUITE} from ${DEBIAN_USERLAND_MIRROR} exited ${out.code}:\n` +
          dec.decode(out.stdout).split("\n").slice(-20).join("\n") + dec.decode(out.stderr),
      );
    }
    const buildSeconds = Math.round((performance.now() - started) / 1000);
    // The downloaded .debs are not needed to run anything.
    const debs = join(dir, "var/cache/apt/archives");
    for await (const entry of Deno.readDir(debs)) {
      if (entry.isFile && entry.name.endsWith(".deb")) await Deno.remove(join(debs, entry.name));
    }
    await Deno.writeTextFile(stamp, JSON.stringify({ packages, buildSeconds }));
    return { dir, built: true, buildSeconds };
  } finally {
    lock.close();
  }
}

/** A host directory bind-mounted read-only into the root filesystem. */
export interface RootfsBind {
  /** Host directory. */
  source: string;
  /** Absolute path inside the root filesystem; it must exist there (e.g. `/etc/ssl/certs`, `/mnt`). */
  target: string;
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * The command that runs `argv` chrooted into `root` with an empty environment (`env -i`), in a
 * private mount namespace (`unshare -m`: nothing mounted leaks to the host or the cache) where
 * the host's `/dev`, a fresh `/proc` and each of `binds` (read-only) are mounted first. The
 * network namespace is the host's, so a server on the host's loopback is reachable. Root only.
 *
 * @param root the root filesystem (from {@link debianRootfs})
 * @param binds directories to mount read-only inside
 * @param argv program (absolute path inside the root) and arguments
 */
export function chrootCommand(
  root: string,
  binds: readonly RootfsBind[],
  argv: readonly string[],
): string[] {
  const r = (path: string) => shellQuote(join(root, path));
  const lines = [
    "set -e",
    `mount --rbind /dev ${r("/dev")}`,
    `mount -t proc proc ${r("/proc")}`,
    ...binds.flatMap((b) => [
      `mount --bind ${shellQuote(b.source)} ${r(b.target)}`,
      `mount -o remount,bind,ro ${r(b.target)}`,
    ]),
    `exec chroot ${shellQuote(root)} /usr/bin/env -i "$@"`,
  ];
  return ["unshare", "-m", "--propagation", "private", "sh", "-c", lines.join("\n"), "sh", ...argv];
}
