/**
 * Test certificates made with the `openssl` command: a CA, server certificates with DNS and IP
 * SANs, client certificates with an organisation, and bare key pairs.
 *
 * openssl is used (rather than WebCrypto + @peculiar/x509) because the outputs feed Go programs
 * that read PEM files, and the openssl command writes exactly those files in one step each.
 *
 * @module
 */

import { join } from "node:path";
import { runCommand } from "./process.ts";

/** A certificate and its key, as files and as PEM text. */
export interface CertificateFiles {
  /** Path of the PEM certificate. */
  certPath: string;
  /** Path of the PEM private key (PKCS#8). */
  keyPath: string;
  /** The certificate PEM. */
  certPem: string;
  /** The private key PEM. */
  keyPem: string;
}

/** Options for {@link issueCertificate}. */
export interface IssueOptions {
  /** Subject common name. */
  commonName: string;
  /** Subject organisations (Kubernetes reads these as groups). */
  organizations?: string[];
  /** DNS subject alternative names. */
  dnsNames?: string[];
  /** IP subject alternative names. */
  ipAddresses?: string[];
  /** Extended key usage: `server`, `client` or both (default both). */
  usage?: "server" | "client" | "both";
  /** Validity in days (default 2). */
  days?: number;
}

async function openssl(args: string[]): Promise<void> {
  await runCommand(["openssl", ...args], { check: true });
}

/**
 * Writes an EC P-256 private key (PKCS#8 PEM) and its public key to `dir/<name>.key` and
 * `dir/<name>.pub`.
 *
 * @returns the two paths
 */
export async function generateKeyPair(
  dir: string,
  name: string,
): Promise<{ keyPath: string; publicKeyPath: string }> {
  const keyPath = join(dir, `${name}.key`);
  const publicKeyPath = join(dir, `${name}.pub`);
  await openssl([
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    keyPath,
  ]);
  await openssl(["pkey", "-in", keyPath, "-pubout", "-out", publicKeyPath]);
  return { keyPath, publicKeyPath };
}

/**
 * Creates a self-signed CA certificate in `dir/<name>.crt` with its key in `dir/<name>.key`.
 *
 * @param dir output directory
 * @param name file base name
 * @param commonName subject CN
 */
export async function createCa(
  dir: string,
  name: string,
  commonName: string,
): Promise<CertificateFiles> {
  const { keyPath } = await generateKeyPair(dir, name);
  const certPath = join(dir, `${name}.crt`);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    keyPath,
    "-out",
    certPath,
    "-days",
    "2",
    "-subj",
    `/CN=${commonName}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
  ]);
  return {
    certPath,
    keyPath,
    certPem: await Deno.readTextFile(certPath),
    keyPem: await Deno.readTextFile(keyPath),
  };
}

/**
 * Issues a certificate signed by `ca` into `dir/<name>.crt` / `dir/<name>.key`.
 *
 * @param ca the signing CA
 * @param dir output directory
 * @param name file base name
 * @param options subject, SANs and usage
 */
export async function issueCertificate(
  ca: CertificateFiles,
  dir: string,
  name: string,
  options: IssueOptions,
): Promise<CertificateFiles> {
  const { keyPath } = await generateKeyPair(dir, name);
  const csrPath = join(dir, `${name}.csr`);
  const extPath = join(dir, `${name}.ext`);
  const certPath = join(dir, `${name}.crt`);
  // Subject components are escaped for openssl's /-separated -subj syntax.
  const escape = (value: string) => value.replace(/[\\/=+]/g, (c) => `\\${c}`);
  const subject = (options.organizations ?? []).map((o) => `/O=${escape(o)}`).join("") +
    `/CN=${escape(options.commonName)}`;
  await openssl(["req", "-new", "-key", keyPath, "-out", csrPath, "-subj", subject]);
  const sans = [
    ...(options.dnsNames ?? []).map((name) => `DNS:${name}`),
    ...(options.ipAddresses ?? []).map((ip) => `IP:${ip}`),
  ];
  const usage = options.usage ?? "both";
  const eku = usage === "server"
    ? "serverAuth"
    : usage === "client"
    ? "clientAuth"
    : "serverAuth,clientAuth";
  const extensions = [
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${eku}`,
    ...(sans.length ? [`subjectAltName=${sans.join(",")}`] : []),
  ];
  await Deno.writeTextFile(extPath, extensions.join("\n") + "\n");
  await openssl([
    "x509",
    "-req",
    "-in",
    csrPath,
    "-CA",
    ca.certPath,
    "-CAkey",
    ca.keyPath,
    "-CAcreateserial",
    "-out",
    certPath,
    "-days",
    String(options.days ?? 2),
    "-extfile",
    extPath,
  ]);
  await Deno.remove(csrPath);
  await Deno.remove(extPath);
  return {
    certPath,
    keyPath,
    certPem: await Deno.readTextFile(certPath),
    keyPem: await Deno.readTextFile(keyPath),
  };
}

/**
 * Issues a `localhost` server certificate from `ca` and writes it into `certDir` the way
 * spiffe-helper writes an SVID set (cert, then key, then bundle).
 *
 * @param ca the signing CA
 * @param dir where the key and certificate files are made
 * @param certDir the SVID directory to write
 * @param name file base name of the certificate (default `leaf`)
 * @returns the issued certificate
 */
export async function writeLocalhostSvid(
  ca: CertificateFiles,
  dir: string,
  certDir: string,
  name = "leaf",
): Promise<CertificateFiles> {
  const leaf = await issueCertificate(ca, dir, name, {
    commonName: "localhost",
    dnsNames: ["localhost"],
    usage: "server",
  });
  await Deno.writeTextFile(join(certDir, "svid.pem"), leaf.certPem);
  await Deno.writeTextFile(join(certDir, "svid_key.pem"), leaf.keyPem);
  await Deno.writeTextFile(join(certDir, "svid_bundle.pem"), ca.certPem);
  return leaf;
}
