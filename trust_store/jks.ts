/**
 * Java KeyStore (JKS) writer for trusted-certificate entries. Written by hand because no allowed
 * library writes JKS; the format is small (Sun's `JavaKeyStore.engineStore`):
 * magic `0xFEEDFEED`, version 2, entry count, then per entry tag 2 (trustedCertEntry), alias
 * (Java modified UTF-8, here ASCII only), creation time in ms, certificate type `X.509`, DER
 * length and bytes; finally SHA-1 over the password as UTF-16BE, the bytes of
 * `"Mighty Aphrodite"`, and everything before it.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** The password every distribution uses for its system keystore. */
export const JKS_PASSWORD = "changeit";

/** One trustedCertEntry. */
export interface JksEntry {
  /** Alias: lower-case ASCII (keytool lower-cases JKS aliases); must be unique. */
  alias: string;
  /** Certificate DER bytes. */
  der: Uint8Array;
  /** Creation time recorded in the entry (kept deterministic by callers). */
  created: Date;
}

class Writer {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  #len = 0;
  #grow(n: number) {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u16(n: number) {
    this.#grow(2);
    this.#view.setUint16(this.#len, n);
    this.#len += 2;
  }
  u32(n: number) {
    this.#grow(4);
    this.#view.setUint32(this.#len, n >>> 0);
    this.#len += 4;
  }
  u64(n: number) {
    this.u32(Math.floor(n / 2 ** 32));
    this.u32(n >>> 0);
  }
  utf(s: string) {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 0 || c > 0x7f) throw new Error(`JKS alias must be ASCII: ${JSON.stringify(s)}`);
    }
    this.u16(s.length);
    this.bytes(new TextEncoder().encode(s));
  }
  bytes(b: Uint8Array) {
    this.#grow(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }
  done(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

/**
 * Encodes trusted certificates as a JKS keystore.
 *
 * @param entries the certificates with unique aliases
 * @param password store password (integrity only; JKS does not encrypt trusted certificates)
 */
export function encodeJks(entries: readonly JksEntry[], password = JKS_PASSWORD): Uint8Array {
  const w = new Writer();
  w.u32(0xfeedfeed);
  w.u32(2);
  w.u32(entries.length);
  const aliases = new Set<string>();
  for (const e of entries) {
    const alias = e.alias.toLowerCase();
    if (aliases.has(alias)) throw new Error(`duplicate JKS alias ${alias}`);
    aliases.add(alias);
    w.u32(2);
    w.utf(alias);
    w.u64(e.created.getTime());
    w.utf("X.509");
    w.u32(e.der.length);
    w.bytes(e.der);
  }
  const body = w.done();
  const pw = new Uint8Array(password.length * 2);
  for (let i = 0; i < password.length; i++) {
    pw[i * 2] = password.charCodeAt(i) >>> 8;
    pw[i * 2 + 1] = password.charCodeAt(i) & 0xff;
  }
  const digest = createHash("sha1").update(pw).update(new TextEncoder().encode("Mighty Aphrodite"))
    .update(body).digest();
  const out = new Uint8Array(body.length + digest.length);
  out.set(body, 0);
  out.set(digest, body.length);
  return out;
}
