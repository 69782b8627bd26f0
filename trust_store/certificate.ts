/**
 * Certificate parsing. `node:crypto`'s `X509Certificate` validates that the bytes are a
 * certificate (it is ≈10× faster than `@peculiar/x509` on the system bundle; see
 * `render_bench.ts`); identity, validity, subject and CA-ness are read from the DER bytes
 * themselves, because Deno's `X509Certificate` string fields differ from Node's.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, X509Certificate } from "node:crypto";
import { children, type DerElement, readElement } from "./der.ts";

/** One parsed certificate as the trust-store engine uses it. */
export interface TrustedCertificate {
  /** The certificate's DER bytes. */
  readonly der: Uint8Array;
  /** Lower-case hex SHA-256 of the DER: the identity used for deduplication and ordering. */
  readonly sha256: string;
  /** DER of the subject Name (used for the OpenSSL subject hash). */
  readonly subjectDer: Uint8Array;
  /** A readable one-line subject, e.g. `CN=SPIRE Root, O=example`. */
  readonly subject: string;
  /** A short human label: the subject CN, else O, else OU, else `certificate`. */
  readonly label: string;
  /** Start of validity. */
  readonly notBefore: Date;
  /** End of validity. */
  readonly notAfter: Date;
  /** Basic constraints cA=TRUE, or a self-signed v1 certificate (as OpenSSL treats it). */
  readonly isCa: boolean;
  /** Subject and issuer are byte-identical (a root). */
  readonly selfIssued: boolean;
  /** Name of the source this certificate came from (first one, when duplicated). */
  readonly source: string;
  /** The certificate came from the base roots rather than from a custom source. */
  readonly fromBase: boolean;
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

const NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.5": "serialNumber",
  "1.2.840.113549.1.9.1": "emailAddress",
};

/** Decodes a DER OBJECT IDENTIFIER's content to dotted form. */
export function decodeOid(bytes: Uint8Array, el: DerElement): string {
  const arcs: number[] = [];
  let v = 0;
  for (let i = el.contentStart; i < el.end; i++) {
    v = v * 128 + (bytes[i] & 0x7f);
    if (!(bytes[i] & 0x80)) {
      if (arcs.length === 0) {
        const first = v < 80 ? Math.floor(v / 40) : 2;
        arcs.push(first, v - first * 40);
      } else arcs.push(v);
      v = 0;
    }
  }
  return arcs.join(".");
}

/**
 * Decodes a DER string value to text the way OpenSSL's `ASN1_STRING_to_UTF8` reads it:
 * BMPString as UTF-16BE, UniversalString as UTF-32BE, UTF8String as UTF-8, and every other
 * string type (Printable, IA5, Visible, T61, ...) as one byte per character (Latin-1).
 * Returns undefined for non-string tags.
 */
export function decodeString(tag: number, content: Uint8Array): string | undefined {
  switch (tag) {
    case 0x0c:
      return utf8Decoder.decode(content);
    case 0x1e: {
      let s = "";
      for (let i = 0; i + 1 < content.length; i += 2) {
        s += String.fromCharCode((content[i] << 8) | content[i + 1]);
      }
      return s;
    }
    case 0x1c: {
      let s = "";
      for (let i = 0; i + 3 < content.length; i += 4) {
        s += String.fromCodePoint(
          ((content[i] << 24) | (content[i + 1] << 16) | (content[i + 2] << 8) | content[i + 3]) >>>
            0,
        );
      }
      return s;
    }
    case 0x13:
    case 0x14:
    case 0x16:
    case 0x1a:
      return String.fromCharCode(...content);
    default:
      return undefined;
  }
}

function parseTime(bytes: Uint8Array, el: DerElement): Date {
  const s = new TextDecoder().decode(bytes.subarray(el.contentStart, el.end));
  const m = el.tag === 0x17
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?Z$/.exec(s)
    : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?Z$/.exec(s);
  if (!m) throw new Error(`unsupported time ${JSON.stringify(s)}`);
  let year = Number(m[1]);
  if (el.tag === 0x17) year += year < 50 ? 2000 : 1900;
  return new Date(
    Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0)),
  );
}

function readableName(
  bytes: Uint8Array,
  name: DerElement,
): { text: string; attrs: Map<string, string> } {
  const parts: string[] = [];
  const attrs = new Map<string, string>();
  for (const rdn of children(bytes, name)) {
    const values: string[] = [];
    for (const atv of children(bytes, rdn)) {
      const [oidEl, valueEl] = children(bytes, atv);
      const oid = decodeOid(bytes, oidEl);
      const key = NAMES[oid] ?? oid;
      let value: string;
      try {
        value = decodeString(valueEl.tag, bytes.subarray(valueEl.contentStart, valueEl.end)) ??
          "#" +
            [...bytes.subarray(valueEl.start, valueEl.end)].map((b) =>
              b.toString(16).padStart(2, "0")
            ).join("");
      } catch {
        value = "?";
      }
      if (!attrs.has(key)) attrs.set(key, value);
      values.push(`${key}=${value}`);
    }
    parts.push(values.join(" + "));
  }
  return { text: parts.join(", "), attrs };
}

/**
 * Parses one DER certificate.
 *
 * @param der the certificate's DER bytes
 * @param source name of its source, kept for reports
 * @param fromBase whether it comes from the base roots
 * @throws {Error} when the bytes are not a certificate
 */
export function parseCertificate(
  der: Uint8Array,
  source: string,
  fromBase = false,
): TrustedCertificate {
  // Rejects anything that is not a well-formed certificate (signature algorithm, key, ...).
  new X509Certificate(der);
  const cert = readElement(der, 0);
  if (cert.end !== der.length) throw new Error("trailing bytes after the certificate");
  const [tbs] = children(der, cert);
  const fields = children(der, tbs);
  let i = 0;
  let version = 1;
  if (fields[0].tag === 0xa0) {
    const v = children(der, fields[0])[0];
    version = der[v.end - 1] + 1;
    i = 1;
  }
  const issuer = fields[i + 2];
  const validity = children(der, fields[i + 3]);
  const subject = fields[i + 4];
  const subjectDer = der.slice(subject.start, subject.end);
  const selfIssued = Buffer.compare(der.subarray(issuer.start, issuer.end), subjectDer) === 0;
  let basicCa: boolean | undefined;
  for (const f of fields.slice(i + 6)) {
    if (f.tag !== 0xa3) continue;
    for (const ext of children(der, children(der, f)[0])) {
      const parts = children(der, ext);
      if (decodeOid(der, parts[0]) !== "2.5.29.19") continue;
      const value = parts[parts.length - 1];
      const seq = readElement(der, value.contentStart, value.end);
      const inner = children(der, seq);
      basicCa = inner.length > 0 && inner[0].tag === 0x01 && der[inner[0].contentStart] !== 0;
    }
  }
  const { text, attrs } = readableName(der, subject);
  return {
    der,
    sha256: createHash("sha256").update(der).digest("hex"),
    subjectDer,
    subject: text,
    label: attrs.get("CN") ?? attrs.get("O") ?? attrs.get("OU") ?? "certificate",
    notBefore: parseTime(der, validity[0]),
    notAfter: parseTime(der, validity[1]),
    isCa: basicCa ?? (version === 1 && selfIssued),
    selfIssued,
    source,
    fromBase,
  };
}
