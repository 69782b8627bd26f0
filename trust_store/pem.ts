/**
 * Strict PEM reading: only `CERTIFICATE` blocks without headers. Anything else inside
 * `-----BEGIN` markers (a private key, a `TRUSTED CERTIFICATE`, encryption headers) is an error
 * naming the source, so a pasted key is never shipped. Text outside blocks is ignored, as
 * OpenSSL and Go do.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { PemError } from "./errors.ts";

/** One decoded `CERTIFICATE` block. */
export interface PemBlock {
  /** The DER bytes. */
  der: Uint8Array;
  /** 1-based index of the block within its source. */
  index: number;
}

const BEGIN = /^-----BEGIN ([A-Z0-9 ]+)-----\s*$/;
const END = /^-----END ([A-Z0-9 ]+)-----\s*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes every `CERTIFICATE` block of `text`.
 *
 * @param source name used in errors, e.g. `Secret spire/spire-ca-bundle key ca.crt`
 * @param text the PEM text
 * @throws {PemError} on any non-certificate block, headers, bad base64, unterminated blocks, or
 *   when the source holds no certificate at all
 */
export function parsePem(source: string, text: string): PemBlock[] {
  const lines = text.split(/\r?\n/);
  const blocks: PemBlock[] = [];
  let label: string | undefined;
  let body: string[] = [];
  let beginLine = 0;
  let seen = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (label === undefined) {
      const m = BEGIN.exec(line);
      if (m) {
        seen++;
        if (m[1] !== "CERTIFICATE") {
          throw new PemError(
            source,
            `block ${seen} (line ${i + 1}) is a ${m[1]}, only CERTIFICATE blocks are accepted` +
              (m[1].includes("PRIVATE KEY") ? "; private keys are never shipped" : ""),
          );
        }
        label = m[1];
        body = [];
        beginLine = i + 1;
      } else if (END.test(line)) {
        throw new PemError(source, `line ${i + 1}: END marker without a BEGIN`);
      }
      continue;
    }
    const end = END.exec(line);
    if (end) {
      if (end[1] !== label) {
        throw new PemError(
          source,
          `block ${seen} (line ${beginLine}): END ${end[1]} does not match`,
        );
      }
      const b64 = body.join("");
      if (b64.length === 0 || !BASE64.test(b64) || b64.length % 4 !== 0) {
        throw new PemError(source, `block ${seen} (line ${beginLine}): invalid base64 body`);
      }
      const buf = Buffer.from(b64, "base64");
      // Copied out of Buffer's shared pool so each certificate owns its bytes.
      blocks.push({ der: new Uint8Array(buf), index: seen });
      label = undefined;
      continue;
    }
    if (line.includes(":")) {
      throw new PemError(
        source,
        `block ${seen} (line ${beginLine}) has PEM headers (line ${
          i + 1
        }); headers are not accepted`,
      );
    }
    if (BEGIN.test(line)) {
      throw new PemError(source, `block ${seen} (line ${beginLine}) is not terminated`);
    }
    if (line.length) body.push(line);
  }
  if (label !== undefined) {
    throw new PemError(source, `block ${seen} (line ${beginLine}) is not terminated`);
  }
  if (blocks.length === 0) throw new PemError(source, "contains no CERTIFICATE block");
  return blocks;
}

/** Encodes DER bytes as a PEM block with 64-character lines. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.length).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
