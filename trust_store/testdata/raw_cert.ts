/**
 * Hand-built self-signed CA certificates whose every field can be replaced by arbitrary bytes,
 * for tests of encodings that certificate libraries refuse to produce (a Name attribute value of
 * any ASN.1 tag, a zero-length serial, a BER length). Built from DER by hand because
 * `@peculiar/x509` re-encodes names and serials canonically and so cannot produce them. Signed
 * with a real ECDSA P-256 key, so only the chosen field is wrong.
 *
 * @module
 */

import { generateKeyPairSync, sign } from "node:crypto";
import { concat, encodeElement, encodeOid } from "../der.ts";
import { encodePem } from "../pem.ts";

/** Fields of {@link rawCa}, each a complete DER element (tag, length, content). */
export interface RawCaOptions {
  /** The CN attribute value of subject and issuer (default a UTF8String `Raw CA`). */
  cnValue?: Uint8Array;
  /** Further attributes of subject and issuer, as complete AttributeTypeAndValue SEQUENCEs. */
  extraAttributes?: Uint8Array[];
  /** The serialNumber INTEGER (default `02 02 01 23`). */
  serial?: Uint8Array;
  /** The explicit `[0]` version element, or `null` for none (default v3). */
  version?: Uint8Array | null;
  /** Start of validity (default an hour ago). */
  notBefore?: Date;
  /** End of validity (default in a day). */
  notAfter?: Date;
}

/** A hand-built certificate. */
export interface RawCert {
  /** DER bytes. */
  der: Uint8Array;
  /** One PEM `CERTIFICATE` block of {@link RawCert.der}. */
  pem: string;
}

const enc = new TextEncoder();
const seq = (...parts: Uint8Array[]) => encodeElement(0x30, concat(parts));

/** A UTF8String element. */
export function utf8(text: string): Uint8Array {
  return encodeElement(0x0c, enc.encode(text));
}

/** One AttributeTypeAndValue: the OID and an already encoded value. */
export function attribute(oid: string, value: Uint8Array): Uint8Array {
  return seq(encodeOid(oid), value);
}

function utcTime(d: Date): Uint8Array {
  const s = d.toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z";
  return encodeElement(0x17, enc.encode(s));
}

const ECDSA_SHA256 = seq(encodeOid("1.2.840.10045.4.3.2"));

/** Builds, signs and wraps the TBSCertificate assembled from `o`. */
export function rawCa(o: RawCaOptions = {}): RawCert {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const rdns = [attribute("2.5.4.3", o.cnValue ?? utf8("Raw CA")), ...(o.extraAttributes ?? [])]
    .map((a) => encodeElement(0x31, a));
  const name = seq(...rdns);
  const basicConstraints = seq(
    encodeOid("2.5.29.19"),
    new Uint8Array([0x01, 0x01, 0xff]),
    encodeElement(0x04, seq(new Uint8Array([0x01, 0x01, 0xff]))),
  );
  const keyUsage = seq(
    encodeOid("2.5.29.15"),
    new Uint8Array([0x01, 0x01, 0xff]),
    encodeElement(0x04, new Uint8Array([0x03, 0x02, 0x01, 0x06])),
  );
  const version = o.version === undefined
    ? new Uint8Array([0xa0, 0x03, 0x02, 0x01, 0x02])
    : o.version ?? new Uint8Array();
  const tbs = seq(
    version,
    o.serial ?? new Uint8Array([0x02, 0x02, 0x01, 0x23]),
    ECDSA_SHA256,
    name,
    seq(
      utcTime(o.notBefore ?? new Date(Date.now() - 3600_000)),
      utcTime(o.notAfter ?? new Date(Date.now() + 86400_000)),
    ),
    name,
    spki,
    encodeElement(0xa3, seq(basicConstraints, keyUsage)),
  );
  const signature = new Uint8Array(sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" }));
  const der = seq(tbs, ECDSA_SHA256, encodeElement(0x03, concat([new Uint8Array([0]), signature])));
  return { der, pem: encodePem("CERTIFICATE", der) };
}
