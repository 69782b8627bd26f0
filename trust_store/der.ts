/**
 * A minimal DER reader and writer. Written by hand because the trust-store engine needs the raw
 * bytes of the subject, issuer and validity inside tbsCertificate (for the OpenSSL subject hash
 * and for byte-exact identity), which neither `node:crypto` nor `@peculiar/x509` exposes without
 * a full re-parse; the few tags used here are simple to walk and to encode.
 *
 * @module
 */

/** One DER element: its tag byte and where its header and content sit in the input. */
export interface DerElement {
  /** The identifier octet (single-byte tags only). */
  tag: number;
  /** Offset of the identifier octet. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the last content byte. */
  end: number;
}

/** The input is not well-formed DER for what the caller expected. */
export class DerError extends Error {
  /** @param message what is malformed */
  constructor(message: string) {
    super(message);
    this.name = "DerError";
  }
}

/** Reads the element starting at `offset` of `bytes`, bounded by `limit`. */
export function readElement(bytes: Uint8Array, offset: number, limit = bytes.length): DerElement {
  if (offset + 2 > limit) throw new DerError(`truncated element at ${offset}`);
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError(`multi-byte tag at ${offset}`);
  let pos = offset + 1;
  let length = bytes[pos++];
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4) throw new DerError(`unsupported length form at ${offset}`);
    if (pos + n > limit) throw new DerError(`truncated length at ${offset}`);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[pos++];
  }
  const end = pos + length;
  if (end > limit) throw new DerError(`element at ${offset} runs past its container`);
  return { tag, start: offset, contentStart: pos, end };
}

/** Lists the direct children of a constructed element. */
export function children(bytes: Uint8Array, parent: DerElement): DerElement[] {
  const out: DerElement[] = [];
  let pos = parent.contentStart;
  while (pos < parent.end) {
    const el = readElement(bytes, pos, parent.end);
    out.push(el);
    pos = el.end;
  }
  return out;
}

/** Encodes a DER length. */
function encodeLength(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  while (n > 0) {
    out.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return [0x80 | out.length, ...out];
}

/** Encodes one TLV element from a tag and its content. */
export function encodeElement(tag: number, content: Uint8Array): Uint8Array {
  const header = [tag, ...encodeLength(content.length)];
  const out = new Uint8Array(header.length + content.length);
  out.set(header, 0);
  out.set(content, header.length);
  return out;
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** Encodes a dotted OID string as a DER OBJECT IDENTIFIER element. */
export function encodeOid(oid: string): Uint8Array {
  const arcs = oid.split(".").map(Number);
  const body: number[] = [arcs[0] * 40 + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const b: number[] = [arc & 0x7f];
    let v = Math.floor(arc / 128);
    while (v > 0) {
      b.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    body.push(...b);
  }
  return encodeElement(0x06, new Uint8Array(body));
}
