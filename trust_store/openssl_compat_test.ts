import assert from "node:assert/strict";
import { createServer } from "node:https";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import { AtomicWriter, buildTrustSet, OS_FAMILIES, renderTrustStore, storeFiles } from "./mod.ts";
import { opensslRefusal } from "./openssl_compat.ts";
import { encodeElement } from "./der.ts";
import { makeCert } from "./testdata/pki.ts";
import { attribute, rawCa, type RawCert, utf8 } from "./testdata/raw_cert.ts";
import { run } from "./testdata/run.ts";
import { scratchDir } from "./testdata/tmpfs.ts";

const b = (...x: number[]) => new Uint8Array(x);
const text = (tag: number, s = "Bad CA") => encodeElement(tag, new TextEncoder().encode(s));

/** Certificates Deno's X509Certificate accepts and OpenSSL 3 refuses, with the reason expected. */
const BAD: { name: string; cert: RawCert; reason: RegExp }[] = [
  { name: "VisibleString", cert: rawCa({ cnValue: text(0x1a) }), reason: /VisibleString/ },
  { name: "BOOLEAN", cert: rawCa({ cnValue: b(0x01, 1, 0xff) }), reason: /BOOLEAN/ },
  { name: "INTEGER", cert: rawCa({ cnValue: b(0x02, 1, 0x05) }), reason: /\(INTEGER\)/ },
  { name: "OCTET STRING", cert: rawCa({ cnValue: text(0x04) }), reason: /OCTET STRING/ },
  { name: "NULL", cert: rawCa({ cnValue: b(0x05, 0) }), reason: /NULL/ },
  { name: "VideotexString", cert: rawCa({ cnValue: text(0x15) }), reason: /VideotexString/ },
  { name: "GraphicString", cert: rawCa({ cnValue: text(0x19) }), reason: /GraphicString/ },
  { name: "GeneralString", cert: rawCa({ cnValue: text(0x1b) }), reason: /GeneralString/ },
  { name: "UTCTime", cert: rawCa({ cnValue: text(0x17, "250101000000Z") }), reason: /UTCTime/ },
  {
    name: "GeneralizedTime",
    cert: rawCa({ cnValue: text(0x18, "20250101000000Z") }),
    reason: /GeneralizedTime/,
  },
  { name: "OID value", cert: rawCa({ cnValue: b(0x06, 2, 0x2a, 0x03) }), reason: /OBJECT IDENT/ },
  { name: "ENUMERATED", cert: rawCa({ cnValue: b(0x0a, 1, 1) }), reason: /ENUMERATED/ },
  { name: "SET value", cert: rawCa({ cnValue: encodeElement(0x31, utf8("x")) }), reason: /SET/ },
  { name: "context tag", cert: rawCa({ cnValue: text(0x80) }), reason: /not universal/ },
  { name: "bad UTF-8", cert: rawCa({ cnValue: b(0x0c, 2, 0xc0, 0x80) }), reason: /overlong/ },
  { name: "odd BMPString", cert: rawCa({ cnValue: b(0x1e, 3, 0, 0x41, 0) }), reason: /odd/ },
  { name: "BMP surrogate", cert: rawCa({ cnValue: b(0x1e, 2, 0xd8, 0) }), reason: /surrogate/ },
  { name: "UniversalString", cert: rawCa({ cnValue: text(0x1c, "abc") }), reason: /length 3/ },
  {
    name: "empty OID type",
    cert: rawCa({ extraAttributes: [b(0x30, 5, 0x06, 0, 0x0c, 1, 0x41)] }),
    reason: /empty OBJECT IDENTIFIER/,
  },
  {
    name: "3-element attribute",
    cert: rawCa({
      extraAttributes: [b(0x30, 11, 0x06, 3, 0x55, 4, 0x0a, 0x0c, 1, 0x41, 0x0c, 1, 0x42)],
    }),
    reason: /3 elements/,
  },
  { name: "zero-length serial", cert: rawCa({ serial: b(0x02, 0) }), reason: /serial.*zero/ },
  { name: "padded serial", cert: rawCa({ serial: b(0x02, 2, 0, 1) }), reason: /minimally/ },
];

/** Odd certificates OpenSSL loads: they must be kept. */
const ODD_OK: { name: string; cert: RawCert }[] = [
  { name: "PrintableString with @", cert: rawCa({ cnValue: text(0x13, "odd@ca") }) },
  { name: "8-bit T61String", cert: rawCa({ cnValue: b(0x14, 2, 0xe9, 0x41) }) },
  { name: "negative serial", cert: rawCa({ serial: b(0x02, 1, 0x80) }) },
  { name: "BIT STRING value", cert: rawCa({ cnValue: b(0x03, 2, 0, 0x41) }) },
  { name: "NUL in UTF8String", cert: rawCa({ cnValue: b(0x0c, 2, 0x41, 0) }) },
  {
    name: "UTF8 country",
    cert: rawCa({ extraAttributes: [attribute("2.5.4.6", utf8("USA"))] }),
  },
];

const ca = await makeCert({ subject: "CN=Good Root, O=spire-cacerts" });
const leaf = await makeCert({
  subject: "CN=localhost",
  issuer: ca,
  ca: false,
  dnsNames: ["localhost"],
});

async function loads(pem: string): Promise<boolean> {
  return (await run("openssl", ["x509", "-noout"], pem)).code === 0;
}

Deno.test("each corpus entry: Deno accepts it, openssl refuses it, opensslRefusal says why", async () => {
  for (const { name, cert, reason } of BAD) {
    new X509Certificate(cert.der); // Deno's node:crypto takes it: the reason this check exists.
    assert.equal(await loads(cert.pem), false, `${name}: openssl loads it, so it is no test`);
    assert.match(opensslRefusal(cert.der) ?? "(admitted)", reason, name);
  }
  for (const { name, cert } of ODD_OK) {
    assert.equal(await loads(cert.pem), true, `${name}: openssl refuses it`);
    assert.equal(opensslRefusal(cert.der), undefined, name);
  }
  assert.equal(opensslRefusal(new Uint8Array(ca.cert.rawData)), undefined, "a @peculiar/x509 CA");
});

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.length).indexOf(Buffer.from(needle)) >= 0;
}

/** Every DER certificate in a file: PEM blocks decoded, else the raw bytes themselves. */
function derIn(bytes: Uint8Array): Uint8Array[] {
  const t = new TextDecoder().decode(bytes);
  const blocks = [...t.matchAll(/-----BEGIN [A-Z ]+-----\n([A-Za-z0-9+/=\n]+)-----END/g)];
  return blocks.length ? blocks.map((m) => new Uint8Array(Buffer.from(m[1], "base64"))) : [bytes];
}

Deno.test("a bad certificate never poisons a bundle: openssl, curl, python and node trust the good CA", async () => {
  const scratch = await scratchDir("openssl-compat-");
  const server = createServer({ cert: leaf.pem + ca.pem, key: leaf.keyPem }, (_, res) => {
    res.end("hello from the good CA's server\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const url = `https://localhost:${port}/`;
  const leafPath = join(scratch.dir, "leaf.pem");
  await Deno.writeTextFile(leafPath, leaf.pem);
  const consumers = async (bundle: string) => ({
    openssl: (await run("openssl", ["verify", "-CAfile", bundle, leafPath])).code === 0,
    curl: (await run("curl", ["-sS", "--fail", "--cacert", bundle, url])).code === 0,
    python: (await run("python3", [
      "-c",
      "import ssl,sys,urllib.request\n" +
      "ctx=ssl.create_default_context(cafile=sys.argv[1])\n" +
      "print(urllib.request.urlopen(sys.argv[2],context=ctx).read().decode())",
      bundle,
      url,
    ])).code === 0,
    node: (await new Deno.Command("node", {
      args: [
        "-e",
        "require('https').get(process.argv[1],r=>r.pipe(process.stdout)).on('error',e=>{console.error(e.message);process.exit(3)})",
        url,
      ],
      env: { NODE_EXTRA_CA_CERTS: bundle },
      stdout: "piped",
      stderr: "piped",
    }).output()).code === 0,
  });
  const all = { openssl: true, curl: true, python: true, node: true };
  const none = { openssl: false, curl: false, python: false, node: false };
  try {
    const poisoned = join(scratch.dir, "poisoned.pem");
    // Node keeps the certificates before the first it cannot read, so the bad one comes first.
    await Deno.writeTextFile(poisoned, BAD[0].cert.pem + ca.pem);
    assert.deepEqual(await consumers(poisoned), none, "control: a refused certificate poisons");
    const source = {
      name: "Secret corpus/cas key ca.crt",
      text: [BAD.slice(0, 11), [{ cert: ca }], BAD.slice(11), ODD_OK].flat().map((c) => c.cert.pem)
        .join(""),
    };
    const set = await buildTrustSet([source]);
    assert.equal(set.certificates.length, 1 + ODD_OK.length);
    assert.equal(set.warnings.length, BAD.length, set.warnings.join("\n"));
    for (const { name, cert, reason } of BAD) {
      const sha = await crypto.subtle.digest("SHA-256", cert.der as Uint8Array<ArrayBuffer>);
      const hex = [...new Uint8Array(sha)].map((x) => x.toString(16).padStart(2, "0")).join("");
      const w = set.warnings.find((w) => w.includes(`sha256 ${hex.slice(0, 16)}`));
      assert.ok(w, `${name}: no warning`);
      assert.match(w, /^dropped OpenSSL-unloadable .* from Secret corpus\/cas key ca\.crt: /);
      assert.match(w, reason, name);
    }
    for (const family of OS_FAMILIES) {
      const payload = renderTrustStore(family, set);
      for (const [path, bytes] of payload) {
        for (const { name, cert } of BAD) {
          const found = derIn(bytes).some((d) => contains(d, cert.der));
          assert.equal(found, false, `${family} ${path} holds the ${name} certificate`);
        }
      }
      const root = join(scratch.dir, family);
      await Deno.mkdir(root);
      await new AtomicWriter(root).write(payload);
      const files = storeFiles(family);
      for (const path of [files.bundle, ...files.bundleCopies, ...files.trustBundles]) {
        const r = await run("openssl", ["verify", "-CAfile", join(root, path), leafPath]);
        assert.equal(r.code, 0, `${family} ${path}: ${r.stdout}${r.stderr}`);
      }
    }
    assert.deepEqual(
      await consumers(join(scratch.dir, "debian", storeFiles("debian").bundle)),
      all,
    );
    assert.deepEqual(await consumers(join(scratch.dir, "rhel", storeFiles("rhel").bundle)), all);
  } finally {
    server.close();
    await scratch.cleanup();
  }
});
