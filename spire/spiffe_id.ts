/**
 * SPIFFE IDs: parse and validate `spiffe://trust-domain/path` IDs, read the URI SAN of an X.509
 * certificate, and authorise a peer by exact ID or by trust domain.
 *
 * Hand-written because none of the allowed libraries knows SPIFFE's ID rules (lower-case trust
 * domain of `[a-z0-9.-_]`, path segments of `[a-zA-Z0-9.-_]`, no `.`/`..` segments, no query,
 * fragment, port or user info).
 *
 * @module
 */

import { X509Certificate } from "node:crypto";

/** Thrown for a string that is not a valid SPIFFE ID. */
export class InvalidSpiffeIdError extends Error {
  /** The rejected input. */
  readonly input: string;

  /**
   * Creates an instance.
   *
   * @param input the rejected string
   * @param reason which rule it breaks
   */
  constructor(input: string, reason: string) {
    super(`invalid SPIFFE ID ${JSON.stringify(input)}: ${reason}`);
    this.name = "InvalidSpiffeIdError";
    this.input = input;
  }
}

/** Thrown when a peer's SPIFFE ID is not the one (or not in the trust domain) required. */
export class UnauthorizedPeerError extends Error {
  /** The peer's ID, or undefined when its certificate carries none. */
  readonly peerId: string | undefined;

  /**
   * Creates an instance.
   *
   * @param peerId the peer's SPIFFE ID, if any
   * @param expected what was required
   */
  constructor(peerId: string | undefined, expected: string) {
    super(
      peerId === undefined
        ? `peer certificate has no SPIFFE ID; required ${expected}`
        : `peer ${peerId} is not authorised; required ${expected}`,
    );
    this.name = "UnauthorizedPeerError";
    this.peerId = peerId;
  }
}

/** A parsed SPIFFE ID. */
export interface SpiffeId {
  /** Trust domain name, e.g. `example.org`. */
  trustDomain: string;
  /** Path, empty or starting with `/`, e.g. `/workload/server`. */
  path: string;
  /** The whole ID, `spiffe://<trustDomain><path>`. */
  toString(): string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[a-zA-Z0-9._-]+$/;

/**
 * Parses and validates a SPIFFE ID.
 *
 * @param value e.g. `spiffe://example.org/workload/server`
 * @throws {InvalidSpiffeIdError} naming the rule the value breaks
 */
export function parseSpiffeId(value: string): SpiffeId {
  const scheme = "spiffe://";
  if (!value.toLowerCase().startsWith(scheme)) {
    throw new InvalidSpiffeIdError(value, "scheme must be spiffe://");
  }
  if (!value.startsWith(scheme)) throw new InvalidSpiffeIdError(value, "scheme must be lower case");
  const rest = value.slice(scheme.length);
  const slash = rest.indexOf("/");
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? "" : rest.slice(slash);
  if (trustDomain === "") throw new InvalidSpiffeIdError(value, "trust domain is missing");
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw new InvalidSpiffeIdError(
      value,
      "trust domain may hold only lower-case letters, digits, '.', '-' and '_' (no port, user info, query or fragment)",
    );
  }
  if (path !== "") {
    for (const segment of path.slice(1).split("/")) {
      if (segment === "") throw new InvalidSpiffeIdError(value, "path has an empty segment");
      if (segment === "." || segment === "..") {
        throw new InvalidSpiffeIdError(value, "path may not contain '.' or '..' segments");
      }
      if (!SEGMENT.test(segment)) {
        throw new InvalidSpiffeIdError(
          value,
          "path segments may hold only letters, digits, '.', '-' and '_'",
        );
      }
    }
  }
  const whole = `${scheme}${trustDomain}${path}`;
  return { trustDomain, path, toString: () => whole };
}

/** Whether `value` is a valid SPIFFE ID. */
export function isSpiffeId(value: string): boolean {
  try {
    parseSpiffeId(value);
    return true;
  } catch {
    return false;
  }
}

function toX509(cert: X509Certificate | string | Uint8Array): X509Certificate {
  return cert instanceof X509Certificate ? cert : new X509Certificate(cert);
}

/**
 * The URI SANs of a certificate (node's `subjectAltName` string, parsed).
 *
 * @param cert a certificate, its PEM or its DER
 */
export function uriSans(cert: X509Certificate | string | Uint8Array): string[] {
  const san = toX509(cert).subjectAltName ?? "";
  const uris: string[] = [];
  // node formats SANs as `DNS:a, URI:b`; values with commas or quotes are JSON-quoted.
  const re = /URI:("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (const match of san.matchAll(re)) {
    const raw = match[1].trim();
    uris.push(raw.startsWith('"') ? JSON.parse(raw) as string : raw);
  }
  return uris;
}

/**
 * The SPIFFE ID in a certificate's URI SAN. An X.509-SVID carries exactly one.
 *
 * @param cert a certificate, its PEM or its DER
 * @returns the ID, or undefined when the certificate has no valid single `spiffe://` URI SAN
 */
export function spiffeIdFromCertificate(
  cert: X509Certificate | string | Uint8Array,
): SpiffeId | undefined {
  const ids = uriSans(cert).filter((uri) => uri.startsWith("spiffe://"));
  if (ids.length !== 1) return undefined;
  try {
    return parseSpiffeId(ids[0]);
  } catch {
    return undefined;
  }
}

/** A rule a peer must satisfy: one exact ID, any of several IDs, or membership of a trust domain. */
export type PeerPolicy =
  | { id: string }
  | { anyOf: readonly string[] }
  | { trustDomain: string };

/**
 * Checks a peer's certificate against a policy.
 *
 * @param cert the peer's leaf certificate (PEM, DER or parsed)
 * @param policy exact ID, list of IDs, or trust domain
 * @returns the peer's SPIFFE ID
 * @throws {UnauthorizedPeerError} when the peer does not satisfy the policy
 * @throws {InvalidSpiffeIdError} when the policy itself holds an invalid ID
 */
export function authorizePeer(
  cert: X509Certificate | string | Uint8Array,
  policy: PeerPolicy,
): SpiffeId {
  const id = spiffeIdFromCertificate(cert);
  let expected: string;
  let ok: boolean;
  if ("id" in policy) {
    expected = parseSpiffeId(policy.id).toString();
    ok = id?.toString() === expected;
  } else if ("anyOf" in policy) {
    const ids = policy.anyOf.map((value) => parseSpiffeId(value).toString());
    expected = `one of ${ids.join(", ")}`;
    ok = id !== undefined && ids.includes(id.toString());
  } else {
    const td = parseSpiffeId(`spiffe://${policy.trustDomain}`).trustDomain;
    expected = `an ID in trust domain ${td}`;
    ok = id?.trustDomain === td;
  }
  if (!id || !ok) throw new UnauthorizedPeerError(id?.toString(), expected);
  return id;
}
