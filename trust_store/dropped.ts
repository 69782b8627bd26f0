/**
 * What a trust set reports about the certificates it leaves out: the reasons and one record per
 * certificate. Apart from `trust_set.ts` so that `errors.ts` (whose `EmptyTrustSetError` carries
 * them) names them without an import cycle through `pem.ts` and `trust_set.ts`.
 *
 * @module
 */

/**
 * Why a certificate was left out of a trust set, one value per filter (the `reason` label of
 * `cacerts_csi_certificates_dropped_total` and the CAProviderClass status). A duplicate is not a
 * dropped certificate: its first copy is published, so it is only a `TrustSet.warnings` line.
 */
export const DROP_REASONS = [
  "expired",
  "not_yet_valid",
  "non_ca",
  "intermediate",
  "openssl_unloadable",
] as const;

/** One of {@link DROP_REASONS}. */
export type DropReason = typeof DROP_REASONS[number];

/** A certificate that was read from a source and is not published. */
export interface DroppedCertificate {
  /** The filter that dropped it. */
  readonly reason: DropReason;
  /** Its subject (RFC 4514-like), or `(unreadable subject)`. */
  readonly subject: string;
  /** Lower-case hex SHA-256 of its DER. */
  readonly sha256: string;
  /** The name of the source it came from (first one, when several held it). */
  readonly source: string;
  /** Whether it came from the base roots rather than a custom source. */
  readonly fromBase: boolean;
  /** The value that failed: `notAfter <RFC 3339>`, `notBefore <RFC 3339>` or OpenSSL's refusal. */
  readonly detail?: string;
  /** Its notBefore, when readable (a not-yet-valid one becomes publishable then). */
  readonly notBefore?: Date;
}
