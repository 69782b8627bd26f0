/**
 * PKCS#12 truststore writer. The DER is assembled with `der.ts`, using the object identifiers
 * `@peculiar/asn1-pfx` and `@peculiar/asn1-cms` export; the tests read the output back with
 * those libraries' schemas (and with keytool, a JDK client and `openssl pkcs12`). Serialising
 * through `@peculiar/asn1-schema` was measured first: 2.4 s for the 146 certificates of the
 * system bundle (its `ANY`-typed fields, CertBag.certValue, SafeBag.bagValue and
 * ContentInfo.content, are re-parsed by asn1js on every serialise), against the 25 ms budget of
 * a whole render; written by hand in one pass (each certificate copied once) it takes ~1 ms.
 *
 * The store is password-less the way JDK 17's `PKCS12KeyStore` defines it: certificate bags
 * in a plain `data` ContentInfo (no encryption: a certificate-only store has nothing secret)
 * and no MacData. Measured with OpenJDK 17.0.15 on this machine: `keytool -list` reads it
 * without `-storepass` and without prompting, and with `-storepass changeit`;
 * `javax.net.ssl.trustStore` loads it with no `trustStorePassword` and with `changeit` (a store
 * without MAC is not checked against any password). Without a MAC no salt is needed, so equal
 * input gives equal bytes: nothing random is drawn.
 *
 * Each bag carries a `friendlyName` (the alias) and Oracle's trusted-key-usage attribute
 * (OID 2.16.840.1.113894.746875.1.1) holding anyExtendedKeyUsage (2.5.29.37.0): JDK 17 counts a
 * certificate bag without it as no entry at all (`keytool` lists 0 entries), with it as a
 * `trustedCertEntry`, which is what `keytool -importcert` writes.
 *
 * @module
 */

import { concat, encodeElement, encodeOid } from "./der.ts";

/** One certificate entry of a PKCS#12 truststore. */
export interface Pkcs12Entry {
  /** Alias (`friendlyName`); must be unique, case-insensitively, as Java compares them. */
  alias: string;
  /** Certificate DER bytes. */
  der: Uint8Array;
}

/** A PKCS#12 truststore cannot be written from these entries. */
export class Pkcs12Error extends Error {
  /**
   * Creates an instance.
   *
   * @param message what is wrong with the entries
   * @param options the underlying error, if any
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "Pkcs12Error";
  }
}

/** PKCS#9 friendlyName. */
const ID_FRIENDLY_NAME = "1.2.840.113549.1.9.20";
/** Oracle's trusted key usage bag attribute, read by `sun.security.pkcs12.PKCS12KeyStore`. */
export const ORACLE_TRUSTED_KEY_USAGE = "2.16.840.1.113894.746875.1.1";
/** anyExtendedKeyUsage: trusted for every purpose, as `keytool -importcert` records it. */
const ANY_EXTENDED_KEY_USAGE = encodeOid("2.5.29.37.0");

function bmpString(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    out[i * 2] = text.charCodeAt(i) >>> 8;
    out[i * 2 + 1] = text.charCodeAt(i) & 0xff;
  }
  return encodeElement(0x1e, out);
}

/** A DER element not yet written: its tag and its parts, or bytes already encoded. */
type Node = Uint8Array | { tag: number; parts: Node[]; length: number };

function node(tag: number, ...parts: Node[]): Node {
  let length = 0;
  for (const p of parts) length += encodedSize(p);
  return { tag, parts, length };
}

function headerSize(length: number): number {
  return length < 0x80 ? 2 : length < 0x100 ? 3 : length < 0x10000 ? 4 : length < 0x1000000 ? 5 : 6;
}

function encodedSize(n: Node): number {
  return n instanceof Uint8Array ? n.length : headerSize(n.length) + n.length;
}

/** Writes `n` at `pos` and returns the position after it: one copy of each certificate. */
function write(n: Node, out: Uint8Array, pos: number): number {
  if (n instanceof Uint8Array) {
    out.set(n, pos);
    return pos + n.length;
  }
  out[pos++] = n.tag;
  const bytes = headerSize(n.length) - 2;
  if (bytes === 0) out[pos++] = n.length;
  else {
    out[pos++] = 0x80 | bytes;
    for (let i = bytes - 1; i >= 0; i--) out[pos++] = (n.length >>> (8 * i)) & 0xff;
  }
  for (const p of n.parts) pos = write(p, out, pos);
  return pos;
}

// The OIDs as literals (the values of asn1-cms's id_data and asn1-pfx's id_certBag and
// id_x509Certificate): importing those packages for three strings put the whole asn1 stack into
// the CSI driver's start-up, 8 MB resident (bench/driver_memory_bench.ts, tests/csi_imports_test.ts).
const ID_DATA = encodeOid("1.2.840.113549.1.7.1");
const ID_CERT_BAG = encodeOid("1.2.840.113549.1.12.10.1.3");
const ID_X509 = encodeOid("1.2.840.113549.1.9.22.1");
const TRUSTED_FOR_ANY = encodeElement(
  0x30,
  concat([encodeOid(ORACLE_TRUSTED_KEY_USAGE), encodeElement(0x31, ANY_EXTENDED_KEY_USAGE)]),
);

/** SafeBag { certBag, [0] CertBag { x509Certificate, [0] OCTET STRING }, SET OF attributes }. */
function certBag(entry: Pkcs12Entry): Node {
  const friendlyName = encodeElement(
    0x30,
    concat([encodeOid(ID_FRIENDLY_NAME), encodeElement(0x31, bmpString(entry.alias))]),
  );
  // DER orders SET OF members by their encodings.
  const attributes = [friendlyName, TRUSTED_FOR_ANY].sort(compareBytes);
  return node(
    0x30,
    ID_CERT_BAG,
    node(0xa0, node(0x30, ID_X509, node(0xa0, node(0x04, entry.der)))),
    node(0x31, ...attributes),
  );
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * Encodes trusted certificates as a password-less PKCS#12 truststore (readable with no password
 * and with `changeit`). Same entries in the same order give the same bytes.
 *
 * @param entries the certificates with unique aliases
 * @throws {Pkcs12Error} on a duplicate alias or an alias that is not BMP text
 */
export function encodePkcs12(entries: readonly Pkcs12Entry[]): Uint8Array {
  const aliases = new Set<string>();
  for (const e of entries) {
    const key = e.alias.toLowerCase();
    if (aliases.has(key)) throw new Pkcs12Error(`duplicate PKCS#12 alias ${key}`);
    if (/[\ud800-\udfff]/.test(e.alias)) {
      throw new Pkcs12Error(`PKCS#12 alias must be BMP text: ${JSON.stringify(e.alias)}`);
    }
    aliases.add(key);
  }
  const safeContents = node(0x30, ...entries.map(certBag));
  const authenticatedSafe = node(0x30, node(0x30, ID_DATA, node(0xa0, node(0x04, safeContents))));
  const pfx = node(
    0x30,
    new Uint8Array([0x02, 0x01, 0x03]),
    node(0x30, ID_DATA, node(0xa0, node(0x04, authenticatedSafe))),
  );
  const out = new Uint8Array(encodedSize(pfx));
  write(pfx, out, 0);
  return out;
}
