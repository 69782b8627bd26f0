/**
 * A development CA that stands in for SPIRE on one machine: it issues short-lived X.509-SVIDs
 * (`C=US, O=SPIRE, CN=<first DNS name>`, a `spiffe://` URI SAN, NotBefore back-dated like SPIRE)
 * and writes them exactly as spiffe-helper does — `svid.pem`, `svid_key.pem`, `svid_bundle.pem`,
 * each truncated and rewritten in place, in that order.
 *
 * It exists for the local demo and for tests that need rotations without SPIRE. It is not a
 * production CA: keys live in memory only.
 *
 * @module
 */

import { x509 } from "./x509.ts";
type X509 = InstanceType<typeof x509.X509Certificate>;
import { encodePem } from "../trust_store/mod.ts";
import { setTimeout as delay } from "node:timers/promises";

/** Plain name used in output so nobody mistakes it for SPIRE. */
export const DEV_CA_LABEL = "dev CA (stand-in for SPIRE)";

const ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f; // positive
  bytes[0] |= 0x01; // no leading zero byte
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function keyPem(key: CryptoKey): Promise<string> {
  return encodePem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
}

/** An issued SVID as PEM text. */
export interface IssuedSvid {
  /** Leaf certificate PEM. */
  certPem: string;
  /** PKCS#8 private key PEM. */
  keyPem: string;
  /** Leaf NotAfter. */
  notAfter: Date;
}

/** What to put in an SVID. */
export interface SvidRequest {
  /** SPIFFE ID for the URI SAN, e.g. `spiffe://example.org/workload/server`. */
  spiffeId: string;
  /** DNS SANs; the first becomes the CN (as SPIRE does). */
  dnsNames?: string[];
  /** IP SANs. */
  ipAddresses?: string[];
  /** Lifetime from now in milliseconds. */
  ttlMs: number;
  /** NotBefore back-dating in milliseconds (SPIRE uses 10 s; default 10 000). */
  backdateMs?: number;
}

/** A self-signed ECDSA P-256 CA kept in memory. */
export class DevCa {
  /** CA certificate PEM. */
  readonly certPem: string;
  /** Subject of the CA (includes a generation number so rotated CAs are told apart). */
  readonly subject: string;
  /** CA NotAfter. */
  readonly notAfter: Date;
  #cert: X509;
  #keys: CryptoKeyPair;

  private constructor(cert: X509, keys: CryptoKeyPair) {
    this.#cert = cert;
    this.#keys = keys;
    this.certPem = cert.toString("pem") + "\n";
    this.subject = cert.subject;
    this.notAfter = cert.notAfter;
  }

  /**
   * Creates a CA.
   *
   * @param generation number shown in its CN, e.g. `1` → `dev CA (stand-in for SPIRE) 1`
   * @param ttlMs lifetime (default 24 h)
   */
  static async create(generation = 1, ttlMs = 86_400_000): Promise<DevCa> {
    const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `C=US, O=SPIFFE, CN=${DEV_CA_LABEL} ${generation}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + ttlMs),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return new DevCa(cert, keys);
  }

  /**
   * Issues an X.509-SVID.
   *
   * @param request SPIFFE ID, DNS names and lifetime
   */
  async issue(request: SvidRequest): Promise<IssuedSvid> {
    const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
    const now = Date.now();
    const dns = request.dnsNames ?? [];
    const notAfter = new Date(Math.floor((now + request.ttlMs) / 1000) * 1000);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `C=US, O=SPIRE${dns.length ? `, CN=${dns[0]}` : ""}`,
      issuer: this.#cert.subject,
      notBefore: new Date(Math.floor((now - (request.backdateMs ?? 10_000)) / 1000) * 1000),
      notAfter,
      publicKey: keys.publicKey,
      signingKey: this.#keys.privateKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment |
            x509.KeyUsageFlags.keyAgreement,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([
          { type: "url", value: request.spiffeId },
          ...dns.map((value) => ({ type: "dns" as const, value })),
          ...(request.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value })),
        ]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(this.#keys.publicKey),
      ],
    });
    return {
      certPem: cert.toString("pem") + "\n",
      keyPem: await keyPem(keys.privateKey),
      notAfter,
    };
  }
}

/** Options for {@link writeSvidFiles}. */
export interface WriteSvidFilesOptions {
  /** Pause between the three writes, to widen the torn window (default 0). */
  gapMs?: number;
}

/**
 * Writes an SVID set the way spiffe-helper does: truncate-and-rewrite in place (same inode),
 * cert → key → bundle. Readers can observe every torn intermediate state.
 *
 * @param dir target directory (created if missing)
 * @param files the three contents
 * @param options pause between writes
 */
export async function writeSvidFiles(
  dir: string,
  files: { certPem: string; keyPem: string; bundlePem: string },
  options: WriteSvidFilesOptions = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const pause = () => options.gapMs ? delay(options.gapMs) : undefined;
  await Deno.writeTextFile(`${dir}/svid.pem`, files.certPem);
  await pause();
  await Deno.writeTextFile(`${dir}/svid_key.pem`, files.keyPem, { mode: 0o600 });
  await pause();
  await Deno.writeTextFile(`${dir}/svid_bundle.pem`, files.bundlePem);
}
