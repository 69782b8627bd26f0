/**
 * Builds the set of certificates to publish: strict PEM, parse, dedupe by SHA-256 of the DER,
 * filter (each filter configurable and reported as a warning), add the chosen base roots, and
 * order deterministically (custom certificates first, then base roots, each by fingerprint).
 *
 * A certificate OpenSSL 3 would refuse to load ({@link opensslRefusal}) is always dropped, with
 * a `dropped OpenSSL-unloadable` warning naming the field: written into a bundle it would make
 * OpenSSL refuse the whole file, so this filter cannot be turned off.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { BaseRootsError, EmptyTrustSetError, PemError } from "./errors.ts";
import { parseCertificate, type TrustedCertificate } from "./certificate.ts";
import { opensslRefusal } from "./openssl_compat.ts";
import { parsePem } from "./pem.ts";
import type { DroppedCertificate, DropReason } from "./dropped.ts";
import { createHash } from "node:crypto";

/** A named PEM input; the name appears in every error and warning about it. */
export interface PemSource {
  /** e.g. `Secret spire/spire-ca-bundle key ca.crt` */
  name: string;
  /** PEM text holding only CERTIFICATE blocks. */
  text: string;
}

/** Where the public roots under the custom CAs come from. */
export type BaseRoots =
  | { kind: "none" }
  | {
    kind: "bundled";
    /** PEM bundle of the image's ca-certificates package (default {@link DEFAULT_BUNDLED_PATH}). */
    path?: string;
    /** dpkg status files to read the package version from (default {@link DEFAULT_DPKG_STATUS_PATHS}). */
    statusPaths?: readonly string[];
  }
  | { kind: "file"; path: string };

/** What the base roots turned out to be. */
export type BaseInfo =
  | { kind: "none" }
  | { kind: "bundled"; path: string; package: string; version: string; count: number }
  | { kind: "file"; path: string; count: number };

/** Filter and base options; every filter defaults to on. */
export interface TrustSetOptions {
  /** Clock for validity checks (default: now). */
  now?: Date;
  /** Drop certificates whose notAfter is past (default true). */
  dropExpired?: boolean;
  /** Drop certificates whose notBefore is in the future (default true). */
  dropNotYetValid?: boolean;
  /** Drop certificates that are not CAs (default true). */
  requireCa?: boolean;
  /** Keep CA certificates that are not self-issued (intermediates) (default false). */
  keepIntermediates?: boolean;
  /** Base roots (default none). */
  base?: BaseRoots;
}

export { DROP_REASONS, type DroppedCertificate, type DropReason } from "./dropped.ts";

/** The validated, deduplicated, ordered certificates to publish. */
export interface TrustSet {
  /** Custom certificates first, then base roots; each group ordered by SHA-256. */
  readonly certificates: readonly TrustedCertificate[];
  /** One line per dropped certificate or duplicate, naming its source. */
  readonly warnings: readonly string[];
  /**
   * Every distinct certificate dropped by a filter (not duplicates), in input order: custom
   * sources first, then base roots.
   */
  readonly dropped: readonly DroppedCertificate[];
  /** Which base roots were added. */
  readonly base: BaseInfo;
  /** Number of certificates from custom sources that were kept. */
  readonly customCount: number;
}

/** The driver image's Debian ca-certificates bundle. */
export const DEFAULT_BUNDLED_PATH = "/etc/ssl/certs/ca-certificates.crt";
/** Where dpkg (or distroless's status.d) records the ca-certificates package version. */
export const DEFAULT_DPKG_STATUS_PATHS: readonly string[] = [
  "/var/lib/dpkg/status",
  "/var/lib/dpkg/status.d/ca-certificates",
];

async function packageVersion(paths: readonly string[]): Promise<string> {
  for (const p of paths) {
    let text: string;
    try {
      text = await readFile(p, "utf8");
    } catch {
      continue;
    }
    for (const stanza of text.split(/\n\s*\n/)) {
      if (!/^Package: ca-certificates$/m.test(stanza)) continue;
      const v = /^Version: (.+)$/m.exec(stanza);
      if (v) return v[1].trim();
    }
  }
  return "unknown";
}

/** A certificate OpenSSL would refuse to load: never written, reported with its reason. */
interface Unloadable {
  readonly unloadable: string;
  readonly sha256: string;
  readonly subject: string;
  readonly source: string;
  readonly fromBase: boolean;
}

function parseSource(
  source: PemSource,
  fromBase: boolean,
): (TrustedCertificate | Unloadable)[] {
  return parsePem(source.name, source.text).map((block) => {
    const unloadable = opensslRefusal(block.der);
    if (unloadable !== undefined) {
      let subject = "(unreadable subject)";
      try {
        subject = parseCertificate(block.der, source.name, fromBase).subject;
      } catch {
        // The reason already says what is wrong; the subject is only for the reader.
      }
      const sha256 = createHash("sha256").update(block.der).digest("hex");
      return { unloadable, sha256, subject, source: source.name, fromBase };
    }
    try {
      return parseCertificate(block.der, source.name, fromBase);
    } catch (e) {
      throw new PemError(
        source.name,
        `block ${block.index} is not a valid certificate (${(e as Error).message})`,
      );
    }
  });
}

async function readBase(
  base: BaseRoots,
): Promise<{ info: BaseInfo; certs: (TrustedCertificate | Unloadable)[] }> {
  if (base.kind === "none") return { info: { kind: "none" }, certs: [] };
  const path = base.kind === "file" ? base.path : base.path ?? DEFAULT_BUNDLED_PATH;
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new BaseRootsError(`cannot read base roots ${path}: ${(e as Error).message}`);
  }
  const name = base.kind === "file" ? `base roots file ${path}` : `bundled roots ${path}`;
  const certs = parseSource({ name, text }, true);
  if (base.kind === "file") return { info: { kind: "file", path, count: certs.length }, certs };
  const version = await packageVersion(base.statusPaths ?? DEFAULT_DPKG_STATUS_PATHS);
  return {
    info: { kind: "bundled", path, package: "ca-certificates", version, count: certs.length },
    certs,
  };
}

/**
 * Builds a trust set.
 *
 * @param sources custom PEM sources (e.g. the SPIRE bundle)
 * @param options filters and base roots
 * @throws {PemError} when any source holds anything but clean CERTIFICATE blocks
 * @throws {BaseRootsError} when the base roots cannot be read
 * @throws {EmptyTrustSetError} when nothing is left to publish
 */
export async function buildTrustSet(
  sources: readonly PemSource[],
  options: TrustSetOptions = {},
): Promise<TrustSet> {
  const now = options.now ?? new Date();
  const dropExpired = options.dropExpired ?? true;
  const dropNotYetValid = options.dropNotYetValid ?? true;
  const requireCa = options.requireCa ?? true;
  const keepIntermediates = options.keepIntermediates ?? false;
  const custom = sources.flatMap((s) => parseSource(s, false));
  const { info, certs: baseCerts } = await readBase(options.base ?? { kind: "none" });
  const warnings: string[] = [];
  const dropped: DroppedCertificate[] = [];
  const drop = (
    cert: { subject: string; sha256: string; source: string; fromBase: boolean },
    reason: DropReason,
    warning: string,
    detail?: string,
    notBefore?: Date,
  ) => {
    warnings.push(warning);
    const { subject, sha256, source, fromBase } = cert;
    dropped.push({
      reason,
      subject,
      sha256,
      source,
      fromBase,
      ...(detail === undefined ? {} : { detail }),
      ...(notBefore === undefined ? {} : { notBefore }),
    });
  };
  const seen = new Map<string, { source: string }>();
  const kept: TrustedCertificate[] = [];
  for (const cert of [...custom, ...baseCerts]) {
    const what = `${cert.subject} (sha256 ${cert.sha256.slice(0, 16)}) from ${cert.source}`;
    const first = seen.get(cert.sha256);
    if (first) {
      if (!cert.fromBase) warnings.push(`duplicate ${what} ignored; first seen in ${first.source}`);
      continue;
    }
    seen.set(cert.sha256, cert);
    if ("unloadable" in cert) {
      drop(
        cert,
        "openssl_unloadable",
        `dropped OpenSSL-unloadable ${what}: ${cert.unloadable}`,
        cert.unloadable,
      );
      continue;
    }
    if (dropExpired && cert.notAfter.getTime() < now.getTime()) {
      const detail = `notAfter ${cert.notAfter.toISOString()}`;
      drop(cert, "expired", `dropped expired ${what}: ${detail}`, detail, cert.notBefore);
      continue;
    }
    if (dropNotYetValid && cert.notBefore.getTime() > now.getTime()) {
      const detail = `notBefore ${cert.notBefore.toISOString()}`;
      drop(
        cert,
        "not_yet_valid",
        `dropped not yet valid ${what}: ${detail}`,
        detail,
        cert.notBefore,
      );
      continue;
    }
    if (requireCa && !cert.isCa) {
      drop(cert, "non_ca", `dropped non-CA ${what}`, undefined, cert.notBefore);
      continue;
    }
    if (requireCa && !keepIntermediates && !cert.selfIssued) {
      drop(
        cert,
        "intermediate",
        `dropped intermediate ${what} (keepIntermediates is off)`,
        undefined,
        cert.notBefore,
      );
      continue;
    }
    kept.push(cert);
  }
  if (kept.length === 0) throw new EmptyTrustSetError(warnings, dropped);
  const bySha = (a: TrustedCertificate, b: TrustedCertificate) =>
    a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0;
  const customKept = kept.filter((c) => !c.fromBase).sort(bySha);
  const baseKept = kept.filter((c) => c.fromBase).sort(bySha);
  return {
    certificates: [...customKept, ...baseKept],
    warnings,
    dropped,
    base: info,
    customCount: customKept.length,
  };
}
