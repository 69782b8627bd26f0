/**
 * Certificates made and read with `@peculiar/x509` (loaded after `reflect-metadata`), and a
 * development CA that issues SVIDs the way SPIRE does and writes them the way spiffe-helper does.
 * For the examples, the demo, self-tests and tests: the programs' hot paths read certificates with
 * `node:crypto` and the trust-store engine's DER walk instead (see `trust_store/`).
 *
 * ```ts
 * import { DevCa, writeSvidFiles, x509 } from "./mod.ts";
 * const ca = await DevCa.create();
 * const svid = await ca.issue({ spiffeId: "spiffe://example.org/server", ttlMs: 60_000 });
 * await writeSvidFiles("/tmp/certs", { ...svid, bundlePem: ca.certPem });
 * console.log(new x509.X509Certificate(svid.certPem).subject);
 * ```
 *
 * @module
 */

export { x509 } from "./x509.ts";
export * from "./dev_ca.ts";
