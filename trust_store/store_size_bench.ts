/**
 * The largest custom source each layout takes under a tmpfs cap (the CSI driver's
 * `--tmpfs-size`, default 8Mi), with and without the bundled public roots, by the rules the
 * driver applies (`store_size.ts`, checked against a real tmpfs in `store_size_test.ts`):
 *
 * - publish: a first publish needs the store plus 64 KiB;
 * - rotate: replacing one CA of the source needs the store on disk plus the new store's changed
 *   files (bundles, JKS, PKCS#12 and the new CA's own files) plus 64 KiB;
 * - replace: a source whose every CA changes needs both whole stores plus 64 KiB.
 *
 * The source is N distinct self-signed CAs (ECDSA P-256, ~590 bytes of PEM each; `--rsa` for
 * RSA 2048, ~1090 bytes). Each CA costs whole 4 KiB pages per file it gets, so the limit is
 * mostly a certificate count.
 *
 *   ./scripts/deno run -A trust_store/store_size_bench.ts [--cap=8Mi] [--rsa]
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type BaseRoots,
  buildTrustSet,
  changedTmpfsBytes,
  type OsFamily,
  type Payload,
  payloadTmpfsBytes,
  renderTrustStore,
  swapPeakBytes,
} from "./mod.ts";
import { x509 } from "../x509/mod.ts";

x509.cryptoProvider.set(crypto);

const LAYOUTS: readonly OsFamily[] = ["debian", "alpine", "rhel", "opensuse"];
const UNITS: Readonly<Record<string, number>> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** The certificates of one run: all under one key (the store does not look at keys). */
async function makeCas(count: number, rsa: boolean): Promise<string[]> {
  const alg = rsa
    ? {
      name: "RSASSA-PKCS1-v1_5",
      hash: "SHA-256",
      publicExponent: new Uint8Array([1, 0, 1]),
      modulusLength: 2048,
    }
    : { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: (0x100000 + i).toString(16),
      name: `CN=Bulk CA ${i}, O=store size bench`,
      notBefore: new Date(Date.now() - 3_600_000),
      notAfter: new Date(Date.now() + 86_400_000),
      keys,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      ],
    });
    out.push(cert.toString("pem") + "\n");
  }
  return out;
}

/** The largest n in [0, max) for which `fits(n)` holds (fits is monotone). */
async function largest(fits: (n: number) => Promise<boolean>, max: number): Promise<number> {
  let lo = 0;
  let hi = max;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (await fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

const { values } = parseArgs({
  args: Deno.args,
  options: { cap: { type: "string", default: "8Mi" }, rsa: { type: "boolean", default: false } },
});
const m = /^([1-9][0-9]*)([kmg]?)i?$/i.exec(values.cap);
if (!m) throw new Error(`--cap: "${values.cap}" is not a size such as 8Mi`);
const cap = Number(m[1]) * UNITS[m[2].toLowerCase()];
const count = 2000;
const cas = await makeCas(count, values.rsa);
const avg = Math.round(cas.reduce((n, c) => n + c.length, 0) / count);
console.log(
  `cap ${values.cap} (${cap} bytes), ${values.rsa ? "RSA 2048" : "P-256"} CAs of ${avg} B`,
);
for (const base of [{ kind: "none" }, { kind: "bundled" }] as BaseRoots[]) {
  for (const family of LAYOUTS) {
    const render = async (from: number, to: number): Promise<Payload> => {
      const text = cas.slice(from, to).join("");
      return renderTrustStore(family, await buildTrustSet([{ name: "bench", text }], { base }));
    };
    const swapFits = (a: Payload, b: Payload): boolean =>
      swapPeakBytes(payloadTmpfsBytes(a), changedTmpfsBytes(b, a)) <= cap;
    const publish = await largest(
      async (n) => swapPeakBytes(0, payloadTmpfsBytes(await render(0, n))) <= cap,
      count,
    );
    const rotate = await largest(
      async (n) => swapFits(await render(0, n), await render(1, n + 1)),
      count - 1,
    );
    const replace = await largest(
      async (n) => swapFits(await render(0, n), await render(n, 2 * n)),
      count / 2,
    );
    const source = (n: number) => cas.slice(0, n).join("").length;
    const show = (n: number) => `${n} CAs / ${(source(n) / 1e6).toFixed(2)} MB`;
    console.log(
      `${base.kind.padEnd(7)} ${family.padEnd(8)} publish ${show(publish)}, rotate ${
        show(rotate)
      }, replace ${show(replace)}`,
    );
  }
}
