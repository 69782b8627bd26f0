/**
 * The client's certificate report, in the exact format of the system this project reimplements:
 *
 * ```
 * Certificate Information:
 *   Subject: CN=server-service, O=SPIRE, C=US
 *   Not Before: 2025-01-23T16:42:55Z
 *   Not After: 2025-01-23T16:43:15Z
 *   Time until expiration: 5s
 * ```
 *
 * The subject lists RDNs last-to-first as Go's `pkix.Name.String()` does (RFC 4514 escaping,
 * multi-valued RDNs joined by `+`) but separated by `, ` as the original client printed them; the
 * remaining time is Go's `time.Duration.String()` rounded to seconds, because that is what users
 * of the original client read. Hand-written: neither `node:crypto` (newline-separated, DER order)
 * nor `@peculiar/x509` (DER order) prints this form.
 *
 * @module
 */

import { x509 } from "./x509.ts";

/** Attribute names Go prints by short name; others are printed as @peculiar/x509 names them. */
const GO_NAMES: Record<string, string> = {
  C: "C",
  O: "O",
  OU: "OU",
  CN: "CN",
  L: "L",
  ST: "ST",
  STREET: "STREET",
  POSTALCODE: "POSTALCODE",
  SERIALNUMBER: "SERIALNUMBER",
  "2.5.4.5": "SERIALNUMBER",
  "2.5.4.9": "STREET",
  "2.5.4.17": "POSTALCODE",
};

/** RFC 4514 value escaping as Go does it. */
function escapeValue(value: string): string {
  let out = value.replace(/[\\,+"<>;]/g, (c) => `\\${c}`);
  if (out.startsWith(" ") || out.startsWith("#")) out = `\\${out}`;
  if (out.endsWith(" ") && out.length > 1) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/**
 * A certificate subject, last RDN first, e.g. `CN=server-service, O=SPIRE, C=US`.
 *
 * @param der the certificate's DER bytes
 */
export function goSubject(der: Uint8Array): string {
  const json = new x509.X509Certificate(new Uint8Array(der)).subjectName.toJSON();
  return json.slice().reverse().map((rdn) =>
    Object.entries(rdn).flatMap(([type, values]) =>
      values.map((value) => `${GO_NAMES[type] ?? type}=${escapeValue(value)}`)
    ).join("+")
  ).join(", ");
}

/** RFC 3339 UTC without fractional seconds, e.g. `2025-01-23T16:42:55Z`. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * A duration as Go's `time.Duration.String()` prints it after rounding to a second:
 * `0s`, `5s`, `1m5s`, `2h0m0s`, `-3s`.
 *
 * @param ms milliseconds
 */
export function goDuration(ms: number): string {
  let seconds = Math.round(ms / 1000);
  if (seconds === 0) return "0s";
  const sign = seconds < 0 ? "-" : "";
  seconds = Math.abs(seconds);
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h) return `${sign}${h}h${m}m${s}s`;
  if (m) return `${sign}${m}m${s}s`;
  return `${sign}${s}s`;
}

/** The fields of the report. */
export interface CertificateInfo {
  /** Go-style subject. */
  subject: string;
  /** NotBefore. */
  notBefore: Date;
  /** NotAfter. */
  notAfter: Date;
}

/**
 * Reads the report's fields from a certificate.
 *
 * @param der the certificate's DER bytes
 */
export function certificateInfo(der: Uint8Array): CertificateInfo {
  const cert = new x509.X509Certificate(new Uint8Array(der));
  return { subject: goSubject(der), notBefore: cert.notBefore, notAfter: cert.notAfter };
}

/**
 * The five report lines (no trailing newline).
 *
 * @param info subject and validity
 * @param now the time "until expiration" is counted from (default now)
 */
export function formatCertificateInfo(info: CertificateInfo, now: Date = new Date()): string {
  return [
    "Certificate Information:",
    `  Subject: ${info.subject}`,
    `  Not Before: ${rfc3339(info.notBefore)}`,
    `  Not After: ${rfc3339(info.notAfter)}`,
    `  Time until expiration: ${goDuration(info.notAfter.getTime() - now.getTime())}`,
  ].join("\n");
}
