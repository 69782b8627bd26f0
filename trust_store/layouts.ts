/**
 * Renders a trust set into the files each OS family reads as its system trust store. A payload
 * maps paths relative to the volume root to bytes. OpenSSL hashed names (`<hash>.N`) are plain
 * copies of the certificate's PEM, not symlinks: copies work through every mount, `subPath` and
 * bind, and keep the payload a flat map of files.
 *
 * Java: every family's own tooling writes a JKS keystore at the path its JDK's `cacerts` links
 * to, so the JKS stays there. Evidence: Debian 12's ca-certificates-java 20230710~deb12u1 (on
 * this machine) writes `/etc/ssl/certs/java/cacerts` as JKS (magic `FEEDFEED`); Fedora/RHEL's
 * `update-ca-trust`, SUSE's `update-ca-certificates` and Alpine's java-cacerts package run
 * p11-kit's `trust extract --format=java-cacerts`, which writes JKS (p11-kit 0.24 has no PKCS#12
 * format). JDK 9+ opens either format at `cacerts` (keystore.type.compat), and no family puts a
 * PKCS#12 truststore anywhere, so the PKCS#12 copy sits next to the JKS as `<java>.p12`
 * (`java/cacerts.p12`, suse `java-cacerts.p12`) for `-Djavax.net.ssl.trustStoreType=PKCS12`
 * and for FIPS-mode JDKs that cannot read JKS.
 *
 * @module
 */

import { concat, encodeElement } from "./der.ts";
import { UnknownOsFamilyError } from "./errors.ts";
import { encodeJks } from "./jks.ts";
import { encodePkcs12 } from "./pkcs12.ts";
import { encodePem } from "./pem.ts";
import { subjectHash } from "./subject_hash.ts";
import type { TrustSet } from "./trust_set.ts";
import type { TrustedCertificate } from "./certificate.ts";

/** Every supported OS family. */
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

/** An OS family whose trust-store layout the engine renders. */
export type OsFamily = typeof OS_FAMILIES[number];

/** Path (relative to the volume root, `/`-separated) to file bytes. */
export type Payload = Map<string, Uint8Array>;

/**
 * Parses an OS family name (case-insensitive, surrounding whitespace ignored).
 *
 * @throws {UnknownOsFamilyError} listing the valid values
 */
export function parseOsFamily(value: string): OsFamily {
  const v = value.trim().toLowerCase();
  if ((OS_FAMILIES as readonly string[]).includes(v)) return v as OsFamily;
  throw new UnknownOsFamilyError(value, OS_FAMILIES);
}

type Kind = "debian" | "alpine" | "rhel" | "suse";

function kindOf(family: OsFamily): Kind {
  switch (family) {
    case "debian":
    case "ubuntu":
    case "distroless":
      return "debian";
    case "alpine":
      return "alpine";
    case "fedora":
    case "centos":
    case "rhel":
    case "rockylinux":
    case "oraclelinux":
      return "rhel";
    case "opensuse":
    case "sles":
      return "suse";
  }
}

/**
 * Where a family's system trust store lives, i.e. where to mount the rendered volume:
 * `/etc/ssl/certs` (debian, ubuntu, distroless, alpine), `/etc/pki/ca-trust/extracted` (rhel
 * family), `/var/lib/ca-certificates` (opensuse, sles).
 */
export function defaultMountPath(family: OsFamily): string {
  switch (kindOf(family)) {
    case "debian":
    case "alpine":
      return "/etc/ssl/certs";
    case "rhel":
      return "/etc/pki/ca-trust/extracted";
    case "suse":
      return "/var/lib/ca-certificates";
  }
}

/**
 * Where one family's store puts its files, relative to the volume root. {@link renderTrustStore}
 * places its files from this table, and the webhook points environment variables at the same
 * entries, so the two cannot disagree about a path.
 */
export interface StoreFiles {
  /**
   * PEM bundle of every trusted CA: the file `SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS` and
   * `REQUESTS_CA_BUNDLE` name.
   */
  readonly bundle: string;
  /** Further byte-for-byte copies of {@link StoreFiles.bundle} the family's tools read. */
  readonly bundleCopies: readonly string[];
  /**
   * Directory (`SSL_CERT_DIR`) holding `<label>_<sha256:8>.pem` per certificate and the OpenSSL
   * hashed names `<subject_hash>.N`; `""` is the volume root.
   */
  readonly hashDir: string;
  /** Bundles of OpenSSL `TRUSTED CERTIFICATE` blocks (rhel family). */
  readonly trustBundles: readonly string[];
  /**
   * Directory of one `TRUSTED CERTIFICATE` file per certificate plus hashed names (suse
   * `openssl/`); absent when the family has none.
   */
  readonly trustHashDir?: string;
  /** JKS keystore of every trusted CA (password `changeit`, `JKS_PASSWORD`). */
  readonly java: string;
  /**
   * The same certificates as a password-less PKCS#12 truststore next to {@link StoreFiles.java}
   * (`<java>.p12`): readable with no password and with `changeit`.
   */
  readonly pkcs12: string;
}

const STORE_FILES: Readonly<Record<Kind, StoreFiles>> = {
  debian: {
    bundle: "ca-certificates.crt",
    bundleCopies: [],
    hashDir: "",
    trustBundles: [],
    java: "java/cacerts",
    pkcs12: "java/cacerts.p12",
  },
  alpine: {
    bundle: "ca-certificates.crt",
    bundleCopies: ["cert.pem"],
    hashDir: "",
    trustBundles: [],
    java: "java/cacerts",
    pkcs12: "java/cacerts.p12",
  },
  rhel: {
    bundle: "pem/tls-ca-bundle.pem",
    bundleCopies: ["pem/email-ca-bundle.pem", "pem/objsign-ca-bundle.pem", "ca-bundle.crt"],
    hashDir: "pem/directory-hash",
    trustBundles: ["openssl/ca-bundle.trust.crt", "ca-bundle.trust.crt"],
    java: "java/cacerts",
    pkcs12: "java/cacerts.p12",
  },
  suse: {
    bundle: "ca-bundle.pem",
    bundleCopies: [],
    hashDir: "pem",
    trustBundles: [],
    trustHashDir: "openssl",
    java: "java-cacerts",
    pkcs12: "java-cacerts.p12",
  },
};

/**
 * The files of a family's store inside the volume, exactly where {@link renderTrustStore} writes
 * them (debian/alpine: `ca-certificates.crt`, hashed names at the root, `java/cacerts` and
 * `java/cacerts.p12`; rhel: `pem/tls-ca-bundle.pem`, `pem/directory-hash/`, `java/cacerts` and
 * `java/cacerts.p12`; suse: `ca-bundle.pem`, `pem/`, `java-cacerts` and `java-cacerts.p12`).
 */
export function storeFiles(family: OsFamily): StoreFiles {
  return STORE_FILES[kindOf(family)];
}

const enc = new TextEncoder();

/** A stable, readable file stem: sanitized label plus the first 8 hex digits of the SHA-256. */
export function certificateStem(cert: TrustedCertificate): string {
  const base = cert.label.normalize("NFKD").replace(/[^A-Za-z0-9.-]+/g, "_")
    .replace(/^[._]+|_+$/g, "").slice(0, 64) || "certificate";
  return `${base}_${cert.sha256.slice(0, 8)}`;
}

/**
 * Encodes a certificate as an OpenSSL `TRUSTED CERTIFICATE` PEM block: the DER certificate
 * followed by an `X509_CERT_AUX` holding only the alias, byte for byte what p11-kit 0.24's
 * `trust extract --format=openssl-bundle` writes for an anchor without stapled purposes. With
 * no trust list OpenSSL falls back to its compatibility rule (a self-signed certificate in the
 * store is trusted for every purpose), so `openssl verify` accepts the CA for the default
 * purpose, `-purpose any` and timestamping as well as `sslserver`; an explicit list of
 * purposes would make OpenSSL reject every purpose not on it (error 28, "certificate
 * rejected").
 */
export function trustedCertificatePem(cert: TrustedCertificate): string {
  const alias = encodeElement(0x0c, enc.encode(cert.label));
  const aux = encodeElement(0x30, alias);
  return encodePem("TRUSTED CERTIFICATE", concat([cert.der, aux]));
}

interface Rendered {
  pems: string[];
  stems: string[];
  hashes: string[];
  bundle: Uint8Array;
  jks: Uint8Array;
  pkcs12: Uint8Array;
}

function prepare(set: TrustSet): Rendered {
  const pems = set.certificates.map((c) => encodePem("CERTIFICATE", c.der));
  // Stems (and JKS aliases, which are case-insensitive) must be unique: lengthen the
  // fingerprint part on the rare clash.
  const used = new Set<string>();
  const stems = set.certificates.map((c) => {
    let stem = certificateStem(c);
    for (let n = 16; used.has(stem.toLowerCase()); n += 8) {
      stem = `${certificateStem(c)}${c.sha256.slice(8, n)}`;
    }
    used.add(stem.toLowerCase());
    return stem;
  });
  const counts = new Map<string, number>();
  const hashes = set.certificates.map((c) => {
    const h = subjectHash(c.subjectDer);
    const n = counts.get(h) ?? 0;
    counts.set(h, n + 1);
    return `${h}.${n}`;
  });
  const jks = encodeJks(
    set.certificates.map((c, i) => ({
      alias: stems[i].toLowerCase(),
      der: c.der,
      created: c.notBefore,
    })),
  );
  const pkcs12 = encodePkcs12(
    set.certificates.map((c, i) => ({ alias: stems[i].toLowerCase(), der: c.der })),
  );
  return {
    pems,
    stems,
    hashes,
    bundle: enc.encode(pems.join("")),
    jks,
    pkcs12,
  };
}

function addHashedDir(payload: Payload, dir: string, r: Rendered, pems = r.pems): void {
  const prefix = dir ? `${dir}/` : "";
  for (let i = 0; i < pems.length; i++) {
    const bytes = enc.encode(pems[i]);
    payload.set(`${prefix}${r.stems[i]}.pem`, bytes);
    payload.set(`${prefix}${r.hashes[i]}`, bytes);
  }
}

/**
 * Renders the files of one OS family's trust store:
 * - debian, ubuntu, distroless: `ca-certificates.crt`, `<name>.pem` per certificate,
 *   `<subject_hash>.N`, `java/cacerts` (JKS, password `changeit`), `java/cacerts.p12`
 *   (password-less PKCS#12);
 * - alpine: the same plus `cert.pem`;
 * - rhel family (the `/etc/pki/ca-trust/extracted` tree): `pem/tls-ca-bundle.pem`,
 *   `pem/email-ca-bundle.pem`, `pem/objsign-ca-bundle.pem`, `pem/directory-hash/` (per-cert PEM
 *   and hashed names), `openssl/ca-bundle.trust.crt` (TRUSTED CERTIFICATE blocks),
 *   `java/cacerts`, `java/cacerts.p12`, and at the root `ca-bundle.crt` and `ca-bundle.trust.crt` so the same volume
 *   also works mounted at `/etc/pki/tls/certs`;
 * - opensuse, sles (`/var/lib/ca-certificates`): `ca-bundle.pem`, `pem/` (per-cert PEM + hashed
 *   names), `openssl/` (TRUSTED CERTIFICATE per cert + hashed names), `java-cacerts`,
 *   `java-cacerts.p12`.
 *
 * Every path comes from {@link storeFiles}.
 */
export function renderTrustStore(family: OsFamily, set: TrustSet): Payload {
  const r = prepare(set);
  const files = storeFiles(family);
  const payload: Payload = new Map();
  payload.set(files.bundle, r.bundle);
  for (const path of files.bundleCopies) payload.set(path, r.bundle);
  addHashedDir(payload, files.hashDir, r);
  if (files.trustBundles.length > 0) {
    const trustBundle = enc.encode(
      set.certificates.map((c) => `# ${c.subject}\n${trustedCertificatePem(c)}`).join("\n"),
    );
    for (const path of files.trustBundles) payload.set(path, trustBundle);
  }
  if (files.trustHashDir !== undefined) {
    addHashedDir(payload, files.trustHashDir, r, set.certificates.map(trustedCertificatePem));
  }
  payload.set(files.java, r.jks);
  payload.set(files.pkcs12, r.pkcs12);
  return payload;
}
