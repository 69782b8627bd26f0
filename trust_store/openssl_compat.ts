/**
 * Says whether OpenSSL 3 would load a certificate, before it is written next to others. OpenSSL
 * reads a CA file all or nothing: one certificate it cannot decode makes `X509_STORE_load_file`
 * fail for the whole bundle (`curl: (77) error setting certificate file`, Python's
 * `cafile=` "PEM lib", `NODE_EXTRA_CA_CERTS` "wrong tag"), while `node:crypto`'s
 * `X509Certificate` under Deno accepts all of these certificates. So the trust set drops them.
 *
 * The rules were found by building one self-signed CA per case by hand and loading it with
 * `openssl x509` and as the second certificate of an `openssl verify -CAfile` bundle (OpenSSL
 * 3.0, both always agreed); 100 cases, of which Deno's `X509Certificate` refused 3:
 * - a Name attribute value (issuer or subject) must have a universal, single-byte tag, and be of
 *   a type OpenSSL's `ASN1_PRINTABLE` decodes: BIT STRING, ObjectDescriptor, EXTERNAL, REAL,
 *   EMBEDDED PDV, UTF8String, RELATIVE-OID, tags 14, 15 and 29, NumericString, PrintableString,
 *   T61String, IA5String, UniversalString, BMPString, or a constructed SEQUENCE. Refused: 14
 *   universal tags (end-of-content, BOOLEAN, INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER,
 *   ENUMERATED, SET, VideotexString, UTCTime, GeneralizedTime, GraphicString, VisibleString,
 *   GeneralString) and every context, application and private tag;
 * - UTF8String must be UTF-8 as OpenSSL's `UTF8_getc` reads it (no overlong forms, surrogates
 *   or code points above U+10FFFF; NUL is fine), BMPString an even length without surrogates
 *   (even a valid pair is refused), UniversalString a multiple of 4 bytes of code points up to
 *   U+10FFFF without surrogates, BIT STRING at least one byte with at most 7 unused bits;
 * - each attribute is a SEQUENCE of exactly a well-formed OBJECT IDENTIFIER (non-empty, no
 *   sub-identifier starting with `0x80`, last byte complete) and one value;
 * - the serial number is a non-empty, minimally encoded INTEGER (`00 01` and `FF FF` are refused,
 *   a negative or zero serial and a 21-byte one load).
 *
 * One rule is stricter than OpenSSL: a constructed (BER) string, which OpenSSL loads, is refused,
 * because OpenSSL hashes its decoded text while a DER walk cannot, so its `<hash>.N` name would
 * be wrong. What loads fine but is odd (PrintableString holding `@`, 8-bit IA5String, a
 * non-minimal length form, an empty RDN) is admitted, as OpenSSL admits it.
 *
 * @module
 */

import { children, type DerElement, DerError, readElement } from "./der.ts";

const ACCEPTED_PRIMITIVE = new Set([3, 7, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20, 22, 28, 29, 30]);

const TYPE_NAMES: Record<number, string> = {
  0: "end-of-content",
  1: "BOOLEAN",
  2: "INTEGER",
  3: "BIT STRING",
  4: "OCTET STRING",
  5: "NULL",
  6: "OBJECT IDENTIFIER",
  7: "ObjectDescriptor",
  8: "EXTERNAL",
  9: "REAL",
  10: "ENUMERATED",
  11: "EMBEDDED PDV",
  12: "UTF8String",
  13: "RELATIVE-OID",
  16: "SEQUENCE",
  17: "SET",
  18: "NumericString",
  19: "PrintableString",
  20: "T61String",
  21: "VideotexString",
  23: "UTCTime",
  24: "GeneralizedTime",
  25: "GraphicString",
  26: "VisibleString",
  22: "IA5String",
  27: "GeneralString",
  28: "UniversalString",
  30: "BMPString",
};

function typeName(tag: number): string {
  const cls = tag & 0xc0;
  if (cls === 0x40) return `application tag 0x${tag.toString(16)}`;
  if (cls === 0x80) return `context tag 0x${tag.toString(16)}`;
  if (cls === 0xc0) return `private tag 0x${tag.toString(16)}`;
  const n = tag & 0x1f;
  const name = TYPE_NAMES[n] ?? `universal tag ${n}`;
  return tag & 0x20 ? `constructed ${name}` : name;
}

/** UTF-8 as OpenSSL's `UTF8_getc` accepts it: why not, or undefined. */
function utf8Problem(b: Uint8Array): string | undefined {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    let n: number;
    let v: number;
    let min: number;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) === 0xc0) [n, v, min] = [1, c & 0x1f, 0x80];
    else if ((c & 0xf0) === 0xe0) [n, v, min] = [2, c & 0x0f, 0x800];
    else if ((c & 0xf8) === 0xf0) [n, v, min] = [3, c & 0x07, 0x10000];
    else return `byte 0x${c.toString(16)} at ${i} starts no UTF-8 sequence`;
    if (i + n >= b.length) return `truncated UTF-8 sequence at ${i}`;
    for (let k = 1; k <= n; k++) {
      if ((b[i + k] & 0xc0) !== 0x80) return `bad UTF-8 continuation at ${i + k}`;
      v = v * 64 + (b[i + k] & 0x3f);
    }
    if (v < min) return `overlong UTF-8 sequence at ${i}`;
    if (v >= 0xd800 && v <= 0xdfff) return `UTF-8 surrogate U+${v.toString(16)} at ${i}`;
    if (v > 0x10ffff) return `code point U+${v.toString(16)} above U+10FFFF at ${i}`;
    i += n + 1;
  }
  return undefined;
}

function valueProblem(bytes: Uint8Array, el: DerElement): string | undefined {
  const tag = el.tag;
  const content = bytes.subarray(el.contentStart, el.end);
  if (tag & 0xc0) return `its type (${typeName(tag)}) is not universal`;
  if (tag === 0x30) return undefined;
  if (tag & 0x20) {
    return `its type (${typeName(tag)}) is a constructed BER string (only SEQUENCE may be ` +
      `constructed here)`;
  }
  if (!ACCEPTED_PRIMITIVE.has(tag)) return `OpenSSL refuses its type (${typeName(tag)})`;
  switch (tag) {
    case 0x03:
      if (content.length === 0) return "empty BIT STRING";
      if (content[0] > 7) return `BIT STRING with ${content[0]} unused bits`;
      return undefined;
    case 0x0c: {
      const p = utf8Problem(content);
      return p && `invalid UTF8String (${p})`;
    }
    case 0x1e:
      if (content.length % 2) return `BMPString of odd length ${content.length}`;
      for (let i = 0; i < content.length; i += 2) {
        if (content[i] >= 0xd8 && content[i] <= 0xdf) return `BMPString surrogate at ${i}`;
      }
      return undefined;
    case 0x1c:
      if (content.length % 4) return `UniversalString of length ${content.length}`;
      for (let i = 0; i < content.length; i += 4) {
        const v = ((content[i] << 24) | (content[i + 1] << 16) | (content[i + 2] << 8) |
          content[i + 3]) >>> 0;
        if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
          return `UniversalString code point U+${v.toString(16)} at ${i}`;
        }
      }
      return undefined;
    default:
      return undefined;
  }
}

function oidProblem(bytes: Uint8Array, el: DerElement): string | undefined {
  if (el.tag !== 0x06) return `attribute type is ${typeName(el.tag)}, not an OBJECT IDENTIFIER`;
  if (el.end === el.contentStart) return "empty OBJECT IDENTIFIER";
  if (bytes[el.end - 1] & 0x80) return "OBJECT IDENTIFIER ends inside a sub-identifier";
  let start = true;
  for (let i = el.contentStart; i < el.end; i++) {
    if (start && bytes[i] === 0x80) return "OBJECT IDENTIFIER sub-identifier padded with 0x80";
    start = (bytes[i] & 0x80) === 0;
  }
  return undefined;
}

function nameProblem(bytes: Uint8Array, name: DerElement): string | undefined {
  if (name.tag !== 0x30) return `it is ${typeName(name.tag)}, not a SEQUENCE`;
  for (const rdn of children(bytes, name)) {
    if (rdn.tag !== 0x31) return `an RDN is ${typeName(rdn.tag)}, not a SET`;
    let pos = rdn.contentStart;
    while (pos < rdn.end) {
      if ((bytes[pos] & 0x1f) === 0x1f) return "an attribute has a multi-byte tag";
      const atv = readElement(bytes, pos, rdn.end);
      pos = atv.end;
      if (atv.tag !== 0x30) return `an attribute is ${typeName(atv.tag)}, not a SEQUENCE`;
      const parts: DerElement[] = [];
      let p = atv.contentStart;
      while (p < atv.end) {
        if ((bytes[p] & 0x1f) === 0x1f) {
          return `an attribute value has a multi-byte tag 0x${bytes[p].toString(16)}`;
        }
        const el = readElement(bytes, p, atv.end);
        parts.push(el);
        p = el.end;
      }
      if (parts.length !== 2) return `an attribute has ${parts.length} elements, not 2`;
      const oid = oidProblem(bytes, parts[0]);
      if (oid) return oid;
      const value = valueProblem(bytes, parts[1]);
      if (value) return `an attribute value: ${value}`;
    }
  }
  return undefined;
}

function integerProblem(bytes: Uint8Array, el: DerElement): string | undefined {
  if (el.tag !== 0x02) return `it is ${typeName(el.tag)}, not an INTEGER`;
  const len = el.end - el.contentStart;
  if (len === 0) return "zero-length INTEGER";
  const [a, b] = [bytes[el.contentStart], bytes[el.contentStart + 1]];
  if (len > 1 && ((a === 0x00 && b < 0x80) || (a === 0xff && b >= 0x80))) {
    return "INTEGER not minimally encoded (leading padding byte)";
  }
  return undefined;
}

/**
 * Why OpenSSL 3 would refuse to load this certificate, or undefined when it loads it (as far as
 * the rules in the module documentation go). Malformed DER outside those rules is left to the
 * certificate parser, which refuses it on its own.
 *
 * @param der the certificate's bytes
 * @returns a reason naming the field, e.g. `subject: an attribute value: OpenSSL refuses its
 *   type (VisibleString)`, or undefined
 */
export function opensslRefusal(der: Uint8Array): string | undefined {
  try {
    const cert = readElement(der, 0);
    const tbs = children(der, cert)[0];
    if (tbs === undefined || tbs.tag !== 0x30) return undefined;
    // Walk the first fields by hand: a Name may hold multi-byte tags `children` cannot read.
    const fields: DerElement[] = [];
    let pos = tbs.contentStart;
    for (let i = 0; i < 7 && pos < tbs.end; i++) {
      const el = readElement(der, pos, tbs.end);
      fields.push(el);
      pos = el.end;
    }
    const i = fields[0]?.tag === 0xa0 ? 1 : 0;
    if (fields.length < i + 5) return undefined;
    const serial = integerProblem(der, fields[i]);
    if (serial) return `serial number: ${serial}`;
    const issuer = nameProblem(der, fields[i + 2]);
    if (issuer) return `issuer: ${issuer}`;
    const subject = nameProblem(der, fields[i + 4]);
    if (subject) return `subject: ${subject}`;
    return undefined;
  } catch (e) {
    if (e instanceof DerError) return undefined;
    throw e;
  }
}
