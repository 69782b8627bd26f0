import assert from "node:assert/strict";
import { createServer } from "node:https";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildTrustSet,
  encodePkcs12,
  parsePem,
  Pkcs12Error,
  renderTrustStore,
  storeFiles,
} from "./mod.ts";
import { certificateStem } from "./layouts.ts";
import { makeCert } from "./testdata/pki.ts";
import { run } from "./testdata/run.ts";

const ca = await makeCert({ subject: "CN=PKCS12 Root, O=spire-cacerts" });
const other = await makeCert({ subject: "CN=Other Root" });
const leaf = await makeCert({
  subject: "CN=localhost",
  issuer: ca,
  ca: false,
  dnsNames: ["localhost"],
});
const CLIENT = fileURLToPath(new URL("./testdata/https_client.java", import.meta.url));

Deno.test("keytool lists every PKCS#12 entry as trustedCertEntry, with and without changeit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pkcs12-" });
  try {
    const set = await buildTrustSet([{ name: "two", text: ca.pem + other.pem }]);
    const payload = renderTrustStore("debian", set);
    const path = join(dir, "cacerts.p12");
    await Deno.writeFile(path, payload.get(storeFiles("debian").pkcs12)!);
    const aliases = set.certificates.map((c) => certificateStem(c).toLowerCase());
    for (const pw of [[], ["-storepass", "changeit"]]) {
      const list = await run("keytool", [
        "-list",
        "-keystore",
        path,
        "-storetype",
        "PKCS12",
        ...pw,
      ]);
      assert.equal(list.code, 0, list.stdout + list.stderr);
      assert.doesNotMatch(list.stdout, /Enter keystore password/, "password-less: no prompt");
      assert.match(list.stdout, /Keystore type: PKCS12/);
      assert.match(list.stdout, /Your keystore contains 2 entries/);
      for (const alias of aliases) {
        assert.match(list.stdout, new RegExp(`^${alias}, .*trustedCertEntry`, "m"), pw.join(" "));
      }
    }
    for (const [i, alias] of aliases.entries()) {
      const out = await run("keytool", ["-exportcert", "-rfc", "-alias", alias, "-keystore", path]);
      assert.equal(out.code, 0, out.stderr);
      assert.deepEqual(parsePem("export", out.stdout)[0].der, set.certificates[i].der);
    }
    const info = await run("openssl", ["pkcs12", "-in", path, "-nokeys", "-passin", "pass:"]);
    assert.equal(info.code, 0, info.stderr);
    assert.equal(
      parsePem("openssl", info.stdout.replace(/^(?!-|[A-Za-z0-9+/=]+$).*\n/gm, "")).length,
      2,
    );
    assert.match(info.stdout, /2\.16\.840\.1\.113894\.746875\.1\.1/, "Oracle trusted key usage");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a JDK HTTPS client trusts the server through the PKCS#12 store, with no password and changeit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pkcs12-java-" });
  const server = createServer({ cert: leaf.pem + ca.pem, key: leaf.keyPem }, (_, res) => {
    res.end("hello from the PKCS#12 CA's server\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `https://localhost:${(server.address() as { port: number }).port}/`;
  try {
    for (const family of ["debian", "rhel", "sles"] as const) {
      const set = await buildTrustSet([{ name: "ca", text: ca.pem }], {
        base: { kind: "bundled" },
      });
      const path = join(dir, `${family}.p12`);
      await Deno.writeFile(path, renderTrustStore(family, set).get(storeFiles(family).pkcs12)!);
      for (const pw of [[], ["-Djavax.net.ssl.trustStorePassword=changeit"]]) {
        const r = await run("java", [
          `-Djavax.net.ssl.trustStore=${path}`,
          "-Djavax.net.ssl.trustStoreType=PKCS12",
          ...pw,
          CLIENT,
          url,
        ]);
        assert.equal(r.code, 0, `${family} ${pw}: ${r.stdout}${r.stderr}`);
        assert.equal(r.stdout, "hello from the PKCS#12 CA's server\n");
      }
    }
    const wrong = join(dir, "other.p12");
    const otherSet = await buildTrustSet([{ name: "other", text: other.pem }]);
    await Deno.writeFile(wrong, renderTrustStore("debian", otherSet).get("java/cacerts.p12")!);
    const bad = await run("java", [
      `-Djavax.net.ssl.trustStore=${wrong}`,
      "-Djavax.net.ssl.trustStoreType=PKCS12",
      CLIENT,
      url,
    ]);
    assert.notEqual(bad.code, 0, "a store without the CA must not trust the server");
    assert.match(bad.stderr, /PKIX path building failed|unable to find valid certification path/);
  } finally {
    server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PKCS#12 bytes are the same across renders of the same set, and differ for another", async () => {
  const render = async (text: string) =>
    renderTrustStore("rhel", await buildTrustSet([{ name: "s", text }])).get("java/cacerts.p12")!;
  const a = await render(ca.pem + other.pem);
  const b = await render(other.pem + ca.pem);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, await render(ca.pem));
});

Deno.test("encodePkcs12 refuses duplicate (case-insensitive) aliases", () => {
  const der = parsePem("ca", ca.pem)[0].der;
  assert.throws(
    () => encodePkcs12([{ alias: "a", der }, { alias: "A", der }]),
    (e: unknown) => e instanceof Pkcs12Error && /duplicate PKCS#12 alias a/.test(e.message),
  );
});
