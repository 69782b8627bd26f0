/**
 * Certificates from PEM text, on top of the trust-store engine's strict PEM reader (which also
 * rejects a block cut short, as a file caught mid-rewrite is).
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { encodePem, parsePem } from "../trust_store/pem.ts";
import { PemError } from "../trust_store/errors.ts";

/**
 * Parses every `CERTIFICATE` block of PEM text.
 *
 * @param text PEM text
 * @param source name used in errors (a path)
 * @throws {PemError} when the text is empty, cut short, holds another kind of block, or a block
 *   that is not a certificate
 */
export function parseCertificates(text: string, source: string): X509Certificate[] {
  if (text.trim() === "") throw new PemError(source, "file is empty");
  return parsePem(source, text).map((block) => {
    try {
      return new X509Certificate(block.der);
    } catch (error) {
      throw new PemError(
        source,
        `block ${block.index} is not a valid certificate: ${(error as Error).message}`,
      );
    }
  });
}

/** Encodes DER bytes as PEM with the given label (64-character lines). */
export const toPem: (label: string, der: Uint8Array) => string = encodePem;
