/**
 * Trust-store engine: turns PEM sources into a validated, deduplicated set of CA certificates,
 * renders the files each Linux family and runtime reads as its system trust store, and swaps
 * them into a directory atomically with Kubernetes AtomicWriter semantics.
 *
 * ```ts
 * import { AtomicWriter, buildTrustSet, parseOsFamily, renderTrustStore } from "./mod.ts";
 * const text = await Deno.readTextFile("/run/spire/bundle/bundle.crt");
 * const set = await buildTrustSet([{ name: "Secret spire/spire-ca-bundle key ca.crt", text }]);
 * const payload = renderTrustStore(parseOsFamily("debian"), set);
 * const { changed } = await new AtomicWriter("/var/lib/target").write(payload);
 * console.log(changed ? "store updated" : "store unchanged");
 * ```
 *
 * Layouts (paths relative to the volume root) and where to mount them:
 *
 * | family | mount at | files |
 * |---|---|---|
 * | debian, ubuntu, distroless | `/etc/ssl/certs` | `ca-certificates.crt`, `<label>_<sha256:8>.pem` per certificate, `<subject_hash>.N`, `java/cacerts`, `java/cacerts.p12` |
 * | alpine | `/etc/ssl/certs` | the same plus `cert.pem` (Alpine's `/etc/ssl/cert.pem`, from ca-certificates-bundle, is the relative link `certs/ca-certificates.crt`, so it resolves into the mount; no `SSL_CERT_FILE` needed) |
 * | fedora, centos, rhel, rockylinux, oraclelinux | `/etc/pki/ca-trust/extracted` | `pem/tls-ca-bundle.pem`, `pem/email-ca-bundle.pem`, `pem/objsign-ca-bundle.pem`, `pem/directory-hash/`, `openssl/ca-bundle.trust.crt`, `java/cacerts`, `java/cacerts.p12`; plus `ca-bundle.crt` and `ca-bundle.trust.crt` at the root so the same volume also works mounted at `/etc/pki/tls/certs` |
 * | opensuse, sles | `/var/lib/ca-certificates` | `ca-bundle.pem`, `pem/` (PEM + hashed names), `openssl/` (TRUSTED CERTIFICATE + hashed names), `java-cacerts`, `java-cacerts.p12` |
 *
 * `java/cacerts` (`java-cacerts`) is JKS with password `changeit` (readable by every JDK), the
 * format each family's own tooling writes there; the `.p12` next to it is a password-less
 * PKCS#12 truststore (no MAC, no encryption: JDK 17 reads it with no password and with
 * `changeit`) whose entries carry Oracle's trusted-key-usage attribute, so Java lists them as
 * `trustedCertEntry`. `TRUSTED CERTIFICATE` blocks carry only the alias, as p11-kit writes an
 * anchor, so OpenSSL trusts the CA for every purpose. Certificates OpenSSL 3 would refuse to
 * load are dropped with a warning (see `opensslRefusal`). Hashed names are copies,
 * not symlinks, so they work through any mount. `edk2/cacerts.bin` (RHEL firmware) is not
 * rendered.
 *
 * @module
 */

export * from "./_exports.ts";
