/**
 * Loading an X.509-SVID file set as spiffe-helper writes it: `svid.pem` (leaf then
 * intermediates), `svid_key.pem` (PKCS#8) and `svid_bundle.pem` (trust bundle).
 *
 * spiffe-helper truncates and rewrites each file in place, in the order cert → key → bundle, so a
 * reader can catch an empty file, a new certificate with the old key, or a new certificate with
 * the old bundle. {@link loadSvidSet} accepts a set only when every file parses, the key matches
 * the leaf, the chain verifies against the bundle, and the leaf is within its validity period;
 * otherwise it throws one of the typed errors below and the caller keeps its last good set.
 *
 * `node:crypto` is used instead of `@peculiar/x509`: it parses a certificate about ten times
 * faster and its `verify`/`checkPrivateKey` cover everything needed here.
 *
 * @module
 */

import { createHash, createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { parseCertificates } from "./pem.ts";
import { PemError } from "../trust_store/errors.ts";
import { type SpiffeId, spiffeIdFromCertificate } from "./spiffe_id.ts";

/** File names of an SVID set. */
export interface SvidFileNames {
  /** Leaf + intermediates (default `svid.pem`). */
  svid: string;
  /** PKCS#8 private key (default `svid_key.pem`). */
  key: string;
  /** Trust bundle (default `svid_bundle.pem`). */
  bundle: string;
}

/** The names spiffe-helper is configured with in this project. */
export const DEFAULT_SVID_FILE_NAMES: Readonly<SvidFileNames> = Object.freeze({
  svid: "svid.pem",
  key: "svid_key.pem",
  bundle: "svid_bundle.pem",
});

/** Base class of every reason an SVID set is rejected. */
export class SvidSetError extends Error {
  /** The directory that was read. */
  readonly dir: string;

  /**
   * Creates an instance.
   *
   * @param dir the directory read
   * @param message what is wrong
   */
  constructor(dir: string, message: string) {
    super(message);
    this.name = "SvidSetError";
    this.dir = dir;
  }
}

/** A file is missing, empty, cut short, or not what it should be (a torn write or garbage). */
export class SvidFileError extends SvidSetError {
  /** The path of the bad file. */
  readonly path: string;

  /**
   * Creates an instance.
   *
   * @param dir the directory read
   * @param path the bad file
   * @param reason what is wrong with it
   */
  constructor(dir: string, path: string, reason: string) {
    super(dir, `${path}: ${reason}`);
    this.name = "SvidFileError";
    this.path = path;
  }
}

/** The private key does not belong to the leaf certificate (new cert, old key). */
export class SvidKeyMismatchError extends SvidSetError {
  /**
   * Creates the error.
   *
   * @param dir the directory read
   */
  constructor(dir: string) {
    super(dir, `${dir}: private key does not match the SVID leaf certificate`);
    this.name = "SvidKeyMismatchError";
  }
}

/** The leaf (with its intermediates) does not chain to any root of the bundle. */
export class SvidChainError extends SvidSetError {
  /**
   * Creates an instance.
   *
   * @param dir the directory read
   * @param reason where the chain breaks
   */
  constructor(dir: string, reason: string) {
    super(dir, `${dir}: SVID chain does not verify against the bundle: ${reason}`);
    this.name = "SvidChainError";
  }
}

/** The leaf is expired or not yet valid. */
export class SvidExpiredError extends SvidSetError {
  /**
   * Creates an instance.
   *
   * @param dir the directory read
   * @param reason the validity period and the time of the check
   */
  constructor(dir: string, reason: string) {
    super(dir, `${dir}: SVID leaf ${reason}`);
    this.name = "SvidExpiredError";
  }
}

/** A consistent, verified SVID set. */
export interface SvidSet {
  /** The directory it was read from. */
  dir: string;
  /** Leaf certificate. */
  leaf: X509Certificate;
  /** Intermediates from `svid.pem`, leaf-side first. */
  intermediates: readonly X509Certificate[];
  /** Roots from the bundle. */
  bundle: readonly X509Certificate[];
  /** The private key. */
  key: KeyObject;
  /** `svid.pem` as read (leaf + intermediates), for `cert` of a TLS context. */
  certPem: string;
  /** `svid_key.pem` as read, for `key` of a TLS context. */
  keyPem: string;
  /** `svid_bundle.pem` as read, for `ca` of a TLS context. */
  bundlePem: string;
  /** The SPIFFE ID in the leaf's URI SAN, if any. */
  spiffeId: SpiffeId | undefined;
  /** Leaf NotBefore. */
  notBefore: Date;
  /** Leaf NotAfter. */
  notAfter: Date;
  /** SHA-256 (hex) of the leaf DER + key DER + bundle DERs: equal sets have equal ids. */
  id: string;
}

/** Options for {@link loadSvidSet}. */
export interface LoadSvidOptions {
  /** Time of the validity check (default now). */
  now?: Date;
}

async function readFile(dir: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SvidFileError(dir, path, "file does not exist");
    }
    throw new SvidFileError(dir, path, `cannot be read: ${(error as Error).message}`);
  }
}

function certificates(dir: string, path: string, text: string): X509Certificate[] {
  try {
    return parseCertificates(text, path);
  } catch (error) {
    if (error instanceof PemError) {
      throw new SvidFileError(dir, path, error.message.slice(path.length + 2));
    }
    throw error;
  }
}

function privateKey(dir: string, path: string, text: string): KeyObject {
  if (text.trim() === "") throw new SvidFileError(dir, path, "file is empty");
  const blocks = text.match(
    /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
  );
  if (blocks?.length !== 1 || text.replace(blocks[0], "").trim() !== "") {
    throw new SvidFileError(
      dir,
      path,
      "expected exactly one complete PRIVATE KEY block (partly written?)",
    );
  }
  try {
    return createPrivateKey(text);
  } catch (error) {
    throw new SvidFileError(dir, path, `not a valid private key: ${(error as Error).message}`);
  }
}

function sameDer(a: X509Certificate, b: X509Certificate): boolean {
  const x = a.raw, y = b.raw;
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** Checks leaf → intermediates… → some bundle root. */
function verifyChain(
  dir: string,
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
): void {
  let current = leaf;
  for (const [i, intermediate] of intermediates.entries()) {
    // A chain may already end at a root that is in the bundle.
    if (roots.some((root) => sameDer(root, current) || signedBy(current, root))) return;
    if (!signedBy(current, intermediate)) {
      throw new SvidChainError(dir, `certificate ${i} is not signed by intermediate ${i + 1}`);
    }
    current = intermediate;
  }
  if (!roots.some((root) => sameDer(root, current) || signedBy(current, root))) {
    throw new SvidChainError(
      dir,
      `${intermediates.length ? "last intermediate" : "leaf"} (issuer ${
        current.issuer.replaceAll("\n", ", ")
      }) is signed by none of the ${roots.length} bundle root(s)`,
    );
  }
}

/**
 * Reads and verifies an SVID set.
 *
 * @param dir directory holding the three files
 * @param names file names (default {@link DEFAULT_SVID_FILE_NAMES})
 * @param options validity-check time
 * @throws {SvidFileError} a file is missing, empty, partial or not PEM of the right kind
 * @throws {SvidKeyMismatchError} the key does not match the leaf
 * @throws {SvidChainError} the chain does not verify against the bundle
 * @throws {SvidExpiredError} the leaf is expired or not yet valid
 */
export async function loadSvidSet(
  dir: string,
  names: Partial<SvidFileNames> = {},
  options: LoadSvidOptions = {},
): Promise<SvidSet> {
  const files = { ...DEFAULT_SVID_FILE_NAMES, ...names };
  const paths = {
    svid: join(dir, files.svid),
    key: join(dir, files.key),
    bundle: join(dir, files.bundle),
  };
  const [certPem, keyPem, bundlePem] = await Promise.all([
    readFile(dir, paths.svid),
    readFile(dir, paths.key),
    readFile(dir, paths.bundle),
  ]);
  return verifySvidSet(dir, { certPem, keyPem, bundlePem }, paths, options);
}

/**
 * Verifies an SVID set given as PEM text (from files or from the Workload API).
 *
 * @param dir where it came from (a directory, or a label such as the agent socket)
 * @param pem leaf + intermediates, PKCS#8 key, bundle
 * @param sources names of the three parts used in errors
 * @param options validity-check time
 * @throws {SvidSetError} subclasses as {@link loadSvidSet}
 */
export function verifySvidSet(
  dir: string,
  pem: { certPem: string; keyPem: string; bundlePem: string },
  sources: SvidFileNames = { svid: "svid", key: "key", bundle: "bundle" },
  options: LoadSvidOptions = {},
): SvidSet {
  const { certPem, keyPem, bundlePem } = pem;
  const paths = sources;
  const [leaf, ...intermediates] = certificates(dir, paths.svid, certPem);
  const key = privateKey(dir, paths.key, keyPem);
  const bundle = certificates(dir, paths.bundle, bundlePem);
  if (!leaf.checkPrivateKey(key)) throw new SvidKeyMismatchError(dir);
  verifyChain(dir, leaf, intermediates, bundle);
  const now = options.now ?? new Date();
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (now.getTime() > notAfter.getTime()) {
    throw new SvidExpiredError(
      dir,
      `expired at ${notAfter.toISOString()} (now ${now.toISOString()})`,
    );
  }
  if (now.getTime() < notBefore.getTime()) {
    throw new SvidExpiredError(
      dir,
      `is not valid before ${notBefore.toISOString()} (now ${now.toISOString()})`,
    );
  }
  const hash = createHash("sha256");
  hash.update(leaf.raw);
  hash.update(key.export({ format: "der", type: "pkcs8" }));
  for (const root of bundle) hash.update(root.raw);
  return {
    dir,
    leaf,
    intermediates,
    bundle,
    key,
    certPem,
    keyPem,
    bundlePem,
    spiffeId: spiffeIdFromCertificate(leaf),
    notBefore,
    notAfter,
    id: hash.digest("hex"),
  };
}
