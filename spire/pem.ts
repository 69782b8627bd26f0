/**
 * Splitting PEM text into certificates, strict enough to notice a file caught mid-rewrite.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";

/** Thrown when PEM text is empty, cut short, or holds something that is not a certificate. */
export class PemParseError extends Error {
  /** The file or source the text came from. */
  readonly source: string;

  /**
   * @param source where the text came from (a path)
   * @param reason what is wrong
   */
  constructor(source: string, reason: string) {
    super(`${source}: ${reason}`);
    this.name = "PemParseError";
    this.source = source;
  }
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** One PEM block: its label and DER bytes. */
export interface PemBlock {
  /** Label, e.g. `CERTIFICATE`. */
  label: string;
  /** Decoded body. */
  der: Uint8Array;
}

/**
 * Splits PEM text into blocks. Anything but whitespace outside blocks, or a BEGIN without its END
 * (a file being rewritten), is an error.
 *
 * @param text PEM text
 * @param source name used in errors
 * @throws {PemParseError}
 */
export function parsePemBlocks(text: string, source: string): PemBlock[] {
  if (text.trim() === "") throw new PemParseError(source, "file is empty");
  const blocks: PemBlock[] = [];
  let last = 0;
  for (const match of text.matchAll(BLOCK)) {
    if (text.slice(last, match.index).trim() !== "") {
      throw new PemParseError(source, "unexpected text between PEM blocks (partly written?)");
    }
    const body = match[2].replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
      throw new PemParseError(source, `${match[1]} block is not valid base64`);
    }
    blocks.push({ label: match[1], der: Uint8Array.from(atob(body), (c) => c.charCodeAt(0)) });
    last = match.index + match[0].length;
  }
  if (text.slice(last).trim() !== "") {
    throw new PemParseError(source, "file ends inside a PEM block (partly written?)");
  }
  if (blocks.length === 0) throw new PemParseError(source, "no PEM blocks");
  return blocks;
}

/**
 * Parses every `CERTIFICATE` block of PEM text.
 *
 * @param text PEM text
 * @param source name used in errors
 * @throws {PemParseError} on any other block, or a block that is not a certificate
 */
export function parseCertificates(text: string, source: string): X509Certificate[] {
  return parsePemBlocks(text, source).map((block, i) => {
    if (block.label !== "CERTIFICATE") {
      throw new PemParseError(source, `block ${i + 1} is ${block.label}, expected CERTIFICATE`);
    }
    try {
      return new X509Certificate(block.der);
    } catch (error) {
      throw new PemParseError(
        source,
        `block ${i + 1} is not a valid certificate: ${(error as Error).message}`,
      );
    }
  });
}

/** Encodes DER bytes as PEM with the given label. */
export function toPem(label: string, der: Uint8Array): string {
  let binary = "";
  for (const byte of der) binary += String.fromCharCode(byte);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
