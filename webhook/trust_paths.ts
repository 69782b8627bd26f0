/**
 * Where a pod finds the trust store the CSI volume carries, per OS family: the mount point (the
 * trust-store engine's {@link defaultMountPath}) and, relative to it, the files that runtimes
 * ignoring the system store are pointed at through environment variables.
 *
 * @module
 */

import { defaultMountPath, type OsFamily, parseOsFamily } from "../trust_store/mod.ts";

export { defaultMountPath, type OsFamily, parseOsFamily };

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
 * The store's files inside the volume for a family, as `renderTrustStore` lays them out
 * (debian/alpine: `ca-certificates.crt`, hashed names at the root, `java/cacerts`; rhel:
 * `pem/tls-ca-bundle.pem`, `pem/directory-hash/`, `java/cacerts`; suse: `ca-bundle.pem`, `pem/`,
 * `java-cacerts`).
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
