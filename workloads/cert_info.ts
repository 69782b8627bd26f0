/**
 * The example client's log lines, in the exact format of the Go system this project
 * reimplements, which logged with Go's `log` package:
 *
 * ```
 * 2025/01/23 17:42:50 Using SPIRE trust store
 * 2025/01/23 17:42:50 Making request #1
 * 2025/01/23 17:42:50 Certificate Information:
 * 2025/01/23 17:42:50   Subject: CN=server-service, O=SPIRE, C=US
 * 2025/01/23 17:42:50   Not Before: 2025-01-23T16:42:35Z
 * 2025/01/23 17:42:50   Not After: 2025-01-23T16:42:55Z
 * 2025/01/23 17:42:50   Time until expiration: 5s
 * ```
 *
 * - Every line starts with Go's `log.LstdFlags` prefix, `YYYY/MM/DD HH:MM:SS ` in local time
 *   ({@link goLogPrefix}); each line of the report is logged on its own, so each has a prefix.
 * - The subject is built from the fields of Go's `pkix.Name` the original printed, in this
 *   order: `CN=` (the last CommonName, as Go keeps it), then every `O=`, `OU=`, `C=`, `L=` and
 *   `ST=` value in certificate order, joined by `, ` ({@link goSubject}). Other attributes
 *   (serialNumber, emailAddress, DC, …) are not printed. Values are printed as they are, without
 *   RFC 4514 escaping, since the original formatted the field values itself.
 * - Not Before / Not After are RFC 3339 in UTC (`time.RFC3339` of the certificate's UTC times).
 * - The remaining time is Go's `time.Until(NotAfter).Round(time.Second)` printed by
 *   `time.Duration.String()` ({@link goDuration}).
 *
 * Names are read from the certificate's DER with `@peculiar/x509`, never from `node:crypto`'s
 * subject text (which differs between Deno and Node).
 *
 * @module
 */

import { x509 } from "../x509/mod.ts";

/** OIDs of the `pkix.Name` fields the original printed, in the order it printed them. */
const PRINTED_FIELDS = [
  ["O", "2.5.4.10"],
  ["OU", "2.5.4.11"],
  ["C", "2.5.4.6"],
  ["L", "2.5.4.7"],
  ["ST", "2.5.4.8"],
] as const;
const COMMON_NAME = "2.5.4.3";

/**
 * Go's `log.LstdFlags` (`Ldate | Ltime`) prefix in local time: `2026/12/01 09:05:03 `
 * (trailing space included).
 *
 * @param date the time of the line (default now)
 */
export function goLogPrefix(date: Date = new Date()): string {
  const two = (n: number) => String(n).padStart(2, "0");
  const year = String(date.getFullYear()).padStart(4, "0");
  return `${year}/${two(date.getMonth() + 1)}/${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())} `;
}

/**
 * A certificate subject as the original client printed it, e.g. `CN=server-service, O=SPIRE,
 * C=US`: `CN=` first, then each `O=`, `OU=`, `C=`, `L=`, `ST=` value; nothing else.
 *
 * @param der the certificate's DER bytes
 */
export function goSubject(der: Uint8Array): string {
  const name = new x509.X509Certificate(new Uint8Array(der)).subjectName;
  // pkix.Name.CommonName holds the last CN of the sequence (each one overwrites the previous).
  const parts = [`CN=${name.getField(COMMON_NAME).at(-1) ?? ""}`];
  for (const [label, oid] of PRINTED_FIELDS) {
    for (const value of name.getField(oid)) parts.push(`${label}=${value}`);
  }
  return parts.join(", ");
}

/** RFC 3339 UTC without fractional seconds, e.g. `2025-01-23T16:42:55Z`. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

const SECOND = 1_000_000_000n;
const MAX_DURATION = (1n << 63n) - 1n;
const MIN_DURATION = -(1n << 63n);

/** Go's int64 `Duration` range: `time.Until` saturates to it. */
function clamp(ns: bigint): bigint {
  return ns > MAX_DURATION ? MAX_DURATION : ns < MIN_DURATION ? MIN_DURATION : ns;
}

/** Go's `Duration.Round(time.Second)`: halves away from zero, saturating on overflow. */
function roundToSecond(ns: bigint): bigint {
  const r = ns < 0n ? -(ns % SECOND) : ns % SECOND;
  if (r + r < SECOND) return ns < 0n ? ns + r : ns - r;
  const rounded = ns < 0n ? ns - SECOND + r : ns + SECOND - r;
  if (rounded > MAX_DURATION) return MAX_DURATION;
  if (rounded < MIN_DURATION) return MIN_DURATION;
  return rounded;
}

/** Go's `fmtFrac`: the fraction of `v` with `prec` digits, trailing zeros (and dot) dropped. */
function fraction(v: bigint, prec: number): [string, bigint] {
  let digits = "";
  let print = false;
  for (let i = 0; i < prec; i++) {
    const digit = v % 10n;
    print ||= digit !== 0n;
    if (print) digits = `${digit}${digits}`;
    v /= 10n;
  }
  return [print ? `.${digits}` : "", v];
}

/**
 * Go's `time.Duration.String()` of a duration in nanoseconds (`1h0m0s`, `59m59s`, `1.5s`,
 * `-3s`, `0s`, `1.2ms`).
 *
 * @param ns nanoseconds (clamped to Go's int64 range)
 */
export function goDurationString(ns: bigint): string {
  const d = clamp(ns);
  let u = d < 0n ? -d : d;
  const sign = d < 0n ? "-" : "";
  if (u === 0n) return "0s";
  if (u < SECOND) {
    const [prec, unit] = u < 1_000n ? [0, "ns"] : u < 1_000_000n ? [3, "µs"] : [6, "ms"];
    const [frac, whole] = fraction(u, prec);
    return `${sign}${whole}${frac}${unit}`;
  }
  const [frac, seconds] = fraction(u, 9);
  u = seconds / 60n;
  let text = `${seconds % 60n}${frac}s`;
  if (u > 0n) {
    text = `${u % 60n}m${text}`;
    u /= 60n;
    if (u > 0n) text = `${u}h${text}`;
  }
  return `${sign}${text}`;
}

/**
 * Go's `time.Until(NotAfter).Round(time.Second).String()` for a span in milliseconds:
 * `0s`, `9s`, `59m59s`, `1h0m0s`, `-3s` (halves rounded away from zero: 1.5 s → `2s`,
 * −1.5 s → `-2s`).
 *
 * @param ms milliseconds (NotAfter minus now)
 */
export function goDuration(ms: number): string {
  if (!Number.isFinite(ms)) return goDurationString(ms > 0 ? MAX_DURATION : MIN_DURATION);
  const ns = BigInt(Math.trunc(ms)) * 1_000_000n +
    BigInt(Math.round((ms - Math.trunc(ms)) * 1_000_000));
  return goDurationString(roundToSecond(clamp(ns)));
}

/** The fields of the report. */
export interface CertificateInfo {
  /** Subject as the original client printed it ({@link goSubject}). */
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
 * The five report messages, one per log line, without the log prefix.
 *
 * @param info subject and validity
 * @param now the time "until expiration" is counted from (default now)
 */
export function certificateInfoLines(info: CertificateInfo, now: Date = new Date()): string[] {
  return [
    "Certificate Information:",
    `  Subject: ${info.subject}`,
    `  Not Before: ${rfc3339(info.notBefore)}`,
    `  Not After: ${rfc3339(info.notAfter)}`,
    `  Time until expiration: ${goDuration(info.notAfter.getTime() - now.getTime())}`,
  ];
}
