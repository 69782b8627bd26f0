/**
 * OpenSSL's subject hash (`X509_NAME_hash`, the `<hash>` in `/etc/ssl/certs/<hash>.0`) computed
 * in TypeScript, without shelling out.
 *
 * OpenSSL (`crypto/x509/x_name.c`, `x509_name_canon` and `asn1_string_canon`) hashes a canonical
 * re-encoding of the Name, not its DER. The DER is walked by hand here because no allowed
 * library exposes that canonical form:
 * - every value whose type is UTF8, BMP, Universal, Printable, T61, IA5 or Visible String is
 *   converted to UTF-8 (T61/Printable/IA5/Visible read as Latin-1, BMP as UTF-16BE, Universal as
 *   UTF-32BE), leading and trailing ASCII whitespace removed, internal whitespace runs collapsed
 *   to one space, ASCII letters lower-cased (non-ASCII bytes unchanged), and re-tagged UTF8String;
 *   values of other types are kept as they are;
 * - each RDN is re-encoded as a DER SET OF, whose elements DER sorts by their encodings (this
 *   matters for multi-valued RDNs, whose order can change after canonicalisation);
 * - the RDN SETs are concatenated without the outer SEQUENCE header;
 * - SHA-1 of that; the first four digest bytes read little-endian are the 8 hex digits.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { decodeString } from "./certificate.ts";
import { children, concat, encodeElement, readElement } from "./der.ts";

const CANON_TAGS = new Set([0x0c, 0x1e, 0x1c, 0x13, 0x14, 0x16, 0x1a]);

function isSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d);
}

/** Canonicalises one string value's UTF-8 bytes as `asn1_string_canon` does. */
function canonicalBytes(utf8: Uint8Array): Uint8Array {
  let from = 0;
  let to = utf8.length;
  while (from < to && isSpace(utf8[from])) from++;
  while (to > from && isSpace(utf8[to - 1])) to--;
  const out: number[] = [];
  let i = from;
  while (i < to) {
    const b = utf8[i];
    if (b & 0x80) {
      out.push(b);
      i++;
    } else if (isSpace(b)) {
      out.push(0x20);
      while (i < to && isSpace(utf8[i])) i++;
    } else {
      out.push(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
      i++;
    }
  }
  return new Uint8Array(out);
}

const encoder = new TextEncoder();

/**
 * Returns OpenSSL's canonical encoding of a DER Name (exported for tests and diagnostics).
 *
 * @param nameDer DER of an X.509 Name (a SEQUENCE of RDN SETs)
 */
export function canonicalName(nameDer: Uint8Array): Uint8Array {
  const name = readElement(nameDer, 0);
  const sets: Uint8Array[] = [];
  for (const rdn of children(nameDer, name)) {
    const entries: Uint8Array[] = [];
    for (const atv of children(nameDer, rdn)) {
      const [oid, value] = children(nameDer, atv);
      const oidBytes = nameDer.subarray(oid.start, oid.end);
      let valueBytes: Uint8Array;
      if (CANON_TAGS.has(value.tag)) {
        const content = nameDer.subarray(value.contentStart, value.end);
        // UTF8String is already UTF-8, and single-byte types holding only ASCII are too.
        const utf8 = value.tag === 0x0c || (value.tag !== 0x1e && value.tag !== 0x1c &&
            content.every((b) => b < 0x80))
          ? content
          : encoder.encode(decodeString(value.tag, content) ?? "");
        valueBytes = encodeElement(0x0c, canonicalBytes(utf8));
      } else {
        valueBytes = nameDer.subarray(value.start, value.end);
      }
      entries.push(encodeElement(0x30, concat([oidBytes, valueBytes])));
    }
    // DER order of a SET OF: bytewise, a prefix first; Buffer.compare is exactly that.
    entries.sort(Buffer.compare);
    sets.push(encodeElement(0x31, concat(entries)));
  }
  return concat(sets);
}

/**
 * Computes `openssl x509 -subject_hash` for a DER-encoded subject Name.
 *
 * @param subjectDer DER of the subject Name
 * @returns 8 lower-case hex digits
 */
export function subjectHash(subjectDer: Uint8Array): string {
  const digest = createHash("sha1").update(canonicalName(subjectDer)).digest();
  const value = (digest[0] | (digest[1] << 8) | (digest[2] << 16) | (digest[3] << 24)) >>> 0;
  return value.toString(16).padStart(8, "0");
}
