import assert from "node:assert/strict";
import { createServer, type Server } from "node:tls";
import { join } from "node:path";
import {
  AtomicWriter,
  buildTrustSet,
  defaultMountPath,
  OS_FAMILIES,
  type OsFamily,
  parseOsFamily,
  renderTrustStore,
  storeFiles,
  subjectHash,
  type TrustSet,
  UnknownOsFamilyError,
} from "./mod.ts";
import { Buffer } from "node:buffer";
import { certificateStem, trustedCertificatePem } from "./layouts.ts";
import { p11kitOpensslBundle } from "./testdata/p11kit.ts";
import { makeCert, type TestCert } from "./testdata/pki.ts";
import { run } from "./testdata/run.ts";
import { scratchDir } from "./testdata/tmpfs.ts";

const ca = await makeCert({ subject: "CN=SPIRE Test Root, O=spire-cacerts" });
const leaf = await makeCert({
  subject: "CN=localhost",
  issuer: ca,
  ca: false,
  dnsNames: ["localhost"],
});
const otherCa = await makeCert({ subject: "CN=Unrelated Root" });
const otherLeaf = await makeCert({
  subject: "CN=localhost",
  issuer: otherCa,
  ca: false,
  dnsNames: ["localhost"],
});

/** PEM bundles, hashed directories and keystores of each family, relative to the volume root. */
const FILES: Record<string, { bundles: string[]; dirs: string[]; keystore: string }> = {
  debian: { bundles: ["ca-certificates.crt"], dirs: [""], keystore: "java/cacerts" },
  alpine: { bundles: ["ca-certificates.crt", "cert.pem"], dirs: [""], keystore: "java/cacerts" },
  rhel: {
    bundles: [
      "pem/tls-ca-bundle.pem",
      "pem/email-ca-bundle.pem",
      "pem/objsign-ca-bundle.pem",
      "openssl/ca-bundle.trust.crt",
      "ca-bundle.crt",
      "ca-bundle.trust.crt",
    ],
    dirs: ["pem/directory-hash"],
    keystore: "java/cacerts",
  },
  suse: { bundles: ["ca-bundle.pem"], dirs: ["pem", "openssl"], keystore: "java-cacerts" },
};

function kind(f: OsFamily): string {
  if (["debian", "ubuntu", "distroless"].includes(f)) return "debian";
  if (f === "alpine") return "alpine";
  if (f === "opensuse" || f === "sles") return "suse";
  return "rhel";
}

async function writePem(dir: string, name: string, c: TestCert): Promise<string> {
  const p = join(dir, name);
  await Deno.writeTextFile(p, c.pem);
  return p;
}

async function verify(args: string[], leafPath: string) {
  return await run("openssl", ["verify", "-purpose", "sslserver", ...args, leafPath]);
}

async function startServer(): Promise<{ server: Server; port: number }> {
  const server = createServer({ cert: leaf.pem + ca.pem, key: leaf.keyPem }, (s) => {
    s.end("hello from the custom CA's server\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  if (typeof addr !== "object" || !addr) throw new Error("no address");
  return { server, port: addr.port };
}

async function tlsRead(port: number, caPem: string): Promise<string> {
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [caPem] });
  try {
    const buf = new Uint8Array(256);
    const n = await conn.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } finally {
    conn.close();
  }
}

Deno.test("parseOsFamily and defaultMountPath", () => {
  assert.equal(parseOsFamily(" Ubuntu "), "ubuntu");
  assert.throws(() => parseOsFamily("windows"), (e: unknown) => {
    assert.ok(e instanceof UnknownOsFamilyError);
    assert.match(e.message, /"windows".*debian, ubuntu, distroless, alpine, fedora/);
    return true;
  });
  assert.equal(defaultMountPath("debian"), "/etc/ssl/certs");
  assert.equal(defaultMountPath("alpine"), "/etc/ssl/certs");
  assert.equal(defaultMountPath("rockylinux"), "/etc/pki/ca-trust/extracted");
  assert.equal(defaultMountPath("sles"), "/var/lib/ca-certificates");
  for (const f of OS_FAMILIES) assert.equal(parseOsFamily(f), f);
});

Deno.test("hashed names are copies with .0/.1 on collisions; per-cert names are stable", async () => {
  const twin1 = await makeCert({ subject: "CN=Twin" });
  const twin2 = await makeCert({ subject: "CN=Twin" });
  const set = await buildTrustSet([{ name: "twins", text: twin1.pem + twin2.pem }]);
  const payload = renderTrustStore("debian", set);
  const h = subjectHash(set.certificates[0].subjectDer);
  assert.ok(payload.has(`${h}.0`) && payload.has(`${h}.1`) && !payload.has(`${h}.2`));
  const stems = set.certificates.map(certificateStem);
  assert.match(stems[0], /^Twin_[0-9a-f]{8}$/);
  assert.deepEqual(payload.get(`${h}.0`), payload.get(`${stems[0]}.pem`));
  assert.deepEqual(payload.get(`${h}.1`), payload.get(`${stems[1]}.pem`));
  assert.deepEqual(
    [...renderTrustStore("debian", set).keys()],
    [...payload.keys()],
    "rendering is deterministic",
  );
});

Deno.test("every path storeFiles names is in the rendered payload, and nothing else is", async () => {
  const set = await buildTrustSet([{ name: "two", text: ca.pem + otherCa.pem }]);
  const hashes = set.certificates.map((c) => `${subjectHash(c.subjectDer)}.0`);
  const stems = set.certificates.map((c) => `${certificateStem(c)}.pem`);
  for (const family of OS_FAMILIES) {
    const files = storeFiles(family);
    const payload = renderTrustStore(family, set);
    const named = new Set<string>();
    const has = (path: string) => {
      assert.ok(payload.has(path), `${family}: ${path} named by storeFiles but not rendered`);
      named.add(path);
    };
    for (const path of [files.bundle, ...files.bundleCopies]) {
      has(path);
      assert.deepEqual(payload.get(path), payload.get(files.bundle), `${family}: ${path}`);
    }
    for (const dir of [files.hashDir, files.trustHashDir].filter((d) => d !== undefined)) {
      for (const name of [...hashes, ...stems]) has(dir === "" ? name : `${dir}/${name}`);
    }
    for (const path of files.trustBundles) {
      has(path);
      assert.match(new TextDecoder().decode(payload.get(path)), /BEGIN TRUSTED CERTIFICATE/);
    }
    has(files.java);
    has(files.pkcs12);
    assert.equal(files.pkcs12, `${files.java}.p12`);
    assert.deepEqual([...payload.keys()].filter((p) => !named.has(p)), [], family);
    const expected = FILES[kind(family)];
    assert.deepEqual(
      [files.bundle, ...files.bundleCopies, ...files.trustBundles].sort(),
      [...expected.bundles].sort(),
      `${family}: bundles`,
    );
    assert.deepEqual(
      [files.hashDir, ...(files.trustHashDir === undefined ? [] : [files.trustHashDir])],
      expected.dirs,
    );
    assert.equal(files.java, expected.keystore);
  }
});

Deno.test("every layout works with openssl verify, keytool and a TLS client", async (t) => {
  const scratch = await scratchDir("trust-render-");
  if (Deno.uid() === 0) assert.ok(scratch.tmpfs, "as root the test must run on a real tmpfs");
  const { server, port } = await startServer();
  try {
    const leafPath = await writePem(scratch.dir, "leaf.pem", leaf);
    const otherLeafPath = await writePem(scratch.dir, "other-leaf.pem", otherLeaf);
    const set: TrustSet = await buildTrustSet(
      [{ name: "Secret spire/spire-ca-bundle key ca.crt", text: ca.pem }],
      { base: { kind: "bundled" } },
    );
    const customAlias = certificateStem(set.certificates[0]).toLowerCase();
    assert.ok(customAlias.startsWith("spire_test_root_"));
    for (const family of OS_FAMILIES) {
      await t.step(family, async () => {
        const root = join(scratch.dir, family);
        await Deno.mkdir(root);
        const payload = renderTrustStore(family, set);
        assert.deepEqual(await new AtomicWriter(root).write(payload), { changed: true });
        const files = FILES[kind(family)];
        for (const bundle of files.bundles) {
          const path = join(root, bundle);
          const ok = await verify(["-CAfile", path], leafPath);
          assert.equal(ok.code, 0, `${family} ${bundle}: ${ok.stdout}${ok.stderr}`);
          assert.match(ok.stdout, /: OK/);
          const bad = await verify(["-CAfile", path], otherLeafPath);
          assert.notEqual(bad.code, 0, `${family} ${bundle} trusted an unrelated CA`);
        }
        for (const dir of files.dirs) {
          const ok = await verify(["-CApath", join(root, dir), "-no-CAfile"], leafPath);
          assert.equal(ok.code, 0, `${family} -CApath ${dir}: ${ok.stdout}${ok.stderr}`);
          const bad = await verify(["-CApath", join(root, dir), "-no-CAfile"], otherLeafPath);
          assert.notEqual(bad.code, 0);
        }
        const ks = await run("keytool", [
          "-list",
          "-keystore",
          join(root, files.keystore),
          "-storepass",
          "changeit",
          "-storetype",
          "JKS",
        ]);
        assert.equal(ks.code, 0, ks.stderr + ks.stdout);
        assert.match(
          ks.stdout,
          new RegExp(`Your keystore contains ${set.certificates.length} entr`),
        );
        assert.match(ks.stdout, new RegExp(`^${customAlias}, .*trustedCertEntry`, "m"));
        const wrongPw = await run("keytool", [
          "-list",
          "-keystore",
          join(root, files.keystore),
          "-storepass",
          "wrong-password",
        ]);
        assert.notEqual(wrongPw.code, 0, "keystore integrity must be checked with changeit");
        const primary = await Deno.readTextFile(join(root, files.bundles[0]));
        assert.equal(await tlsRead(port, primary), "hello from the custom CA's server\n");
        await assert.rejects(tlsRead(port, otherCa.pem), "a store without the custom CA must fail");
      });
    }
  } finally {
    server.close();
    await scratch.cleanup();
  }
});

Deno.test("TRUSTED CERTIFICATE blocks carry only an alias, as p11-kit writes an anchor", async () => {
  const set = await buildTrustSet([{ name: "ca", text: ca.pem }]);
  const payload = renderTrustStore("rhel", set);
  const text = new TextDecoder().decode(payload.get("openssl/ca-bundle.trust.crt"));
  assert.match(text, /^# CN=SPIRE Test Root, O=spire-cacerts\n-----BEGIN TRUSTED CERTIFICATE-----/);
  const r = await run("openssl", ["x509", "-noout", "-text", "-fingerprint", "-sha256"], text);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /No Trusted Uses\.\nNo Rejected Uses\.\nAlias: SPIRE Test Root\n/);
  const fp = set.certificates[0].sha256.toUpperCase().match(/../g)!.join(":");
  assert.match(r.stdout, new RegExp(fp));
  const out = await run("openssl", ["x509", "-trustout"], text);
  assert.match(out.stdout, /BEGIN TRUSTED CERTIFICATE/);
});

Deno.test("openssl verify accepts the CA from every TRUSTED file for every purpose", async () => {
  const scratch = await scratchDir("trust-purpose-");
  try {
    const leafPath = await writePem(scratch.dir, "leaf.pem", leaf);
    const otherLeafPath = await writePem(scratch.dir, "other-leaf.pem", otherLeaf);
    const set = await buildTrustSet([{ name: "ca", text: ca.pem + otherCa.pem }]);
    const only = await buildTrustSet([{ name: "ca", text: ca.pem }]);
    let checked = 0;
    for (const family of ["rhel", "sles"] as const) {
      const root = join(scratch.dir, family);
      await Deno.mkdir(root);
      const onlyRoot = join(scratch.dir, `${family}-only`);
      await Deno.mkdir(onlyRoot);
      await new AtomicWriter(root).write(renderTrustStore(family, set));
      await new AtomicWriter(onlyRoot).write(renderTrustStore(family, only));
      const files = storeFiles(family);
      const trusted: string[][] = files.trustBundles.map((p) => ["-CAfile", join(root, p)]);
      const rejectOther: string[][] = files.trustBundles.map((p) => ["-CAfile", join(onlyRoot, p)]);
      if (files.trustHashDir !== undefined) {
        trusted.push(["-CApath", join(root, files.trustHashDir), "-no-CAfile"]);
        rejectOther.push(["-CApath", join(onlyRoot, files.trustHashDir), "-no-CAfile"]);
        for (const c of set.certificates.filter((c) => c.label === "SPIRE Test Root")) {
          trusted.push(["-CAfile", join(root, files.trustHashDir, `${certificateStem(c)}.pem`)]);
        }
      }
      assert.ok(trusted.length >= 2, family);
      for (const where of trusted) {
        for (const purpose of [[], ["-purpose", "any"], ["-purpose", "sslserver"]]) {
          const ok = await run("openssl", ["verify", ...purpose, ...where, leafPath]);
          assert.equal(
            ok.code,
            0,
            `${family} ${where.join(" ")} ${purpose}: ${ok.stdout}${ok.stderr}`,
          );
          assert.match(ok.stdout, /: OK/);
          checked++;
        }
      }
      for (const where of rejectOther) {
        const bad = await run("openssl", ["verify", "-purpose", "any", ...where, otherLeafPath]);
        assert.notEqual(bad.code, 0, `${family} ${where.join(" ")} trusted a CA not in the set`);
      }
    }
    assert.ok(checked >= 12);
  } finally {
    await scratch.cleanup();
  }
});

/** The DER of every `TRUSTED CERTIFICATE` block in a text. */
function trustedBlocks(text: string): { der: Uint8Array }[] {
  const re =
    /-----BEGIN TRUSTED CERTIFICATE-----\n([A-Za-z0-9+/=\n]+)-----END TRUSTED CERTIFICATE-----/g;
  return [...text.matchAll(re)].map((m) => ({ der: new Uint8Array(Buffer.from(m[1], "base64")) }));
}

Deno.test("TRUSTED CERTIFICATE blocks are byte for byte what p11-kit's trust extract writes", async () => {
  const cnOnly = await makeCert({ subject: "CN=P11 Compare Root" });
  const set = await buildTrustSet([{ name: "cas", text: ca.pem + cnOnly.pem }]);
  const bundle = await p11kitOpensslBundle([ca.pem, cnOnly.pem]);
  const theirs = trustedBlocks(bundle);
  assert.ok(theirs.length >= 2, bundle.slice(0, 200));
  for (const cert of set.certificates) {
    const block = theirs.find((b) =>
      b.der.length > cert.der.length &&
      Buffer.compare(Buffer.from(b.der.subarray(0, cert.der.length)), Buffer.from(cert.der)) === 0
    );
    assert.ok(block, `p11-kit did not extract ${cert.subject}`);
    const [ours] = trustedBlocks(trustedCertificatePem(cert));
    assert.deepEqual(ours.der, block.der, `${cert.subject}: aux differs from p11-kit's`);
  }
});
