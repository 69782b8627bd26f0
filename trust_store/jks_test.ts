import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeJks, parsePem } from "./mod.ts";
import { makeCert } from "./testdata/pki.ts";
import { run } from "./testdata/run.ts";

Deno.test("keytool reads the JKS, lists every alias and exports the same certificates", async () => {
  const a = await makeCert({ subject: "CN=JKS Root A" });
  const b = await makeCert({ subject: "CN=JKS Root B" });
  const dir = await Deno.makeTempDir({ prefix: "jks-" });
  try {
    const path = join(dir, "cacerts");
    const created = new Date("2024-01-02T03:04:05Z");
    await Deno.writeFile(
      path,
      encodeJks([
        { alias: "Root_A", der: parsePem("a", a.pem)[0].der, created },
        { alias: "root_b", der: parsePem("b", b.pem)[0].der, created },
      ]),
    );
    const list = await run("keytool", ["-list", "-v", "-keystore", path, "-storepass", "changeit"]);
    assert.equal(list.code, 0, list.stdout + list.stderr);
    assert.match(list.stdout, /Keystore type: JKS/i);
    assert.match(list.stdout, /Your keystore contains 2 entries/);
    assert.match(list.stdout, /Alias name: root_a\nCreation date: Jan 2, 2024/);
    assert.match(list.stdout, /Entry type: trustedCertEntry/);
    for (const [alias, cert] of [["root_a", a], ["root_b", b]] as const) {
      const out = await run("keytool", [
        "-exportcert",
        "-rfc",
        "-alias",
        alias,
        "-keystore",
        path,
        "-storepass",
        "changeit",
      ]);
      assert.equal(out.code, 0, out.stderr);
      assert.deepEqual(parsePem("export", out.stdout)[0].der, parsePem("orig", cert.pem)[0].der);
    }
    const tampered = await Deno.readFile(path);
    tampered[40] ^= 1;
    await Deno.writeFile(path, tampered);
    const bad = await run("keytool", ["-list", "-keystore", path, "-storepass", "changeit"]);
    assert.notEqual(bad.code, 0, "a corrupted keystore must fail its integrity check");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodeJks refuses duplicate (case-insensitive) and non-ASCII aliases", () => {
  const der = new Uint8Array([0x30, 0x00]);
  const created = new Date(0);
  assert.throws(
    () => encodeJks([{ alias: "a", der, created }, { alias: "A", der, created }]),
    /duplicate JKS alias a/,
  );
  assert.throws(() => encodeJks([{ alias: "é", der, created }]), /must be ASCII/);
});
