/**
 * Where a pod finds the trust store the CSI volume carries, per OS family: the mount point (the
 * trust-store engine's {@link defaultMountPath}) and, relative to it, the files that runtimes
 * ignoring the system store are pointed at through environment variables.
 *
 * @module
 */

/** OS families whose trust-store layout the CSI driver renders. */
export const OS_FAMILIES = [
  "debian",
  "ubuntu",
  "distroless",
  "alpine",
  "fedora",
  "centos",
  "rhel",
  "rockylinux",
  "oraclelinux",
  "opensuse",
  "sles",
] as const;

/** One of {@link OS_FAMILIES}. */
export type OsFamily = typeof OS_FAMILIES[number];

/** Thrown for a value that names no known OS family. */
export class UnknownOsFamilyError extends Error {
  /** Creates the error listing the valid values. */
  constructor(value: string) {
    super(`unknown OS family ${JSON.stringify(value)}; valid: ${OS_FAMILIES.join(", ")}`);
    this.name = "UnknownOsFamilyError";
  }
}

/**
 * Parses an OS family name (exact, lower case).
 *
 * @throws {UnknownOsFamilyError} listing the valid values
 */
export function parseOsFamily(value: string): OsFamily {
  if ((OS_FAMILIES as readonly string[]).includes(value)) return value as OsFamily;
  throw new UnknownOsFamilyError(value);
}

/** Where the family's images read their trust store, which the volume is mounted over. */
export function defaultMountPath(family: OsFamily): string {
  switch (family) {
    case "fedora":
    case "centos":
    case "rhel":
    case "rockylinux":
    case "oraclelinux":
      return "/etc/pki/ca-trust/extracted";
    case "opensuse":
    case "sles":
      return "/var/lib/ca-certificates";
    default:
      return "/etc/ssl/certs";
  }
}

/** The OS family assumed when a pod names none: its store lives at `/etc/ssl/certs`. */
export const DEFAULT_OS_FAMILY: OsFamily = "debian";

/** Files inside the mounted volume, relative to its root. */
export interface StoreFiles {
  /** PEM bundle of every trusted root (`SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`, `REQUESTS_CA_BUNDLE`). */
  bundle: string;
  /** Directory of OpenSSL hashed names (`SSL_CERT_DIR`); `""` is the volume root. */
  hashDir: string;
  /** Java key store (password `changeit`). */
  java: string;
}

/**
 * The store's files inside the volume for a family; they follow the layout the engine renders
 * (debian: `ca-certificates.crt`, `java/cacerts`; rhel: `pem/tls-ca-bundle.pem`, `java/cacerts`;
 * suse: `ca-bundle.pem`, `pem/`, `java-cacerts`).
 */
export function storeFiles(family: OsFamily): StoreFiles {
  switch (family) {
    case "fedora":
    case "centos":
    case "rhel":
    case "rockylinux":
    case "oraclelinux":
      return {
        bundle: "pem/tls-ca-bundle.pem",
        hashDir: "pem/directory-hash",
        java: "java/cacerts",
      };
    case "opensuse":
    case "sles":
      return { bundle: "ca-bundle.pem", hashDir: "pem", java: "java-cacerts" };
    default:
      return { bundle: "ca-certificates.crt", hashDir: "", java: "java/cacerts" };
  }
}
