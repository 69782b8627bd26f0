/**
 * Test certificates made with `@peculiar/x509` (loaded with its Reflect shim) and WebCrypto: CAs (self-signed or issued),
 * leaves with SANs for TLS, and certificates with chosen validity, for filter tests.
 *
 * @module
 */

import { x509 } from "../../x509/mod.ts";

x509.cryptoProvider.set(crypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

/** A certificate with its key pair. */
export interface TestCert {
  /** PEM of the certificate. */
  pem: string;
  /** PKCS#8 PEM of the private key. */
  keyPem: string;
  /** The parsed certificate. */
  cert: InstanceType<typeof x509.X509Certificate>;
  /** The key pair. */
  keys: CryptoKeyPair;
}

/** Options for {@link makeCert}. */
export interface MakeCertOptions {
  /** Subject, e.g. `CN=Test CA, O=spire-cacerts`. */
  subject: string;
  /** Issuer; self-signed when absent. */
  issuer?: TestCert;
  /** Basic constraints cA (default true); undefined-ish leaves set `ca: false`. */
  ca?: boolean;
  /** Start of validity (default an hour ago). */
  notBefore?: Date;
  /** End of validity (default in a day). */
  notAfter?: Date;
  /** DNS SANs (for leaves). */
  dnsNames?: string[];
}

let serial = 1;

/** Creates a certificate. */
export async function makeCert(o: MakeCertOptions): Promise<TestCert> {
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
  const ca = o.ca ?? true;
  const extensions: InstanceType<typeof x509.Extension>[] = [
    new x509.BasicConstraintsExtension(ca, undefined, true),
    new x509.KeyUsagesExtension(
      ca
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
        : x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (o.dnsNames) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        o.dnsNames.map((v) => ({ type: "dns" as const, value: v })),
      ),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(4, "0") +
      Math.floor(Math.random() * 1e9).toString(16).padStart(8, "0"),
    subject: o.subject,
    issuer: o.issuer ? o.issuer.cert.subject : o.subject,
    notBefore: o.notBefore ?? new Date(Date.now() - 3600_000),
    notAfter: o.notAfter ?? new Date(Date.now() + 86400_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: o.issuer ? o.issuer.keys.privateKey : keys.privateKey,
    extensions,
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const keyPem = x509.PemConverter.encode(pkcs8.buffer, "PRIVATE KEY");
  return { pem: cert.toString("pem") + "\n", keyPem, cert, keys };
}
