import assert from "node:assert/strict";
import { parsePem, PemError } from "./mod.ts";
import { encodePem } from "./pem.ts";
import { makeCert } from "./testdata/pki.ts";

const ca = await makeCert({ subject: "CN=PEM Test CA" });
const SRC = "Secret spire/spire-ca-bundle key ca.crt";

function rejects(text: string, pattern: RegExp) {
  assert.throws(() => parsePem(SRC, text), (e: unknown) => {
    assert.ok(e instanceof PemError, `expected PemError, got ${e}`);
    assert.equal(e.source, SRC);
    assert.ok(e.message.startsWith(SRC + ": "), e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("parsePem reads every certificate of the system bundle", () => {
  const text = Deno.readTextFileSync("/etc/ssl/certs/ca-certificates.crt");
  const expected = text.match(/-----BEGIN CERTIFICATE-----/g)!.length;
  const blocks = parsePem("system", text);
  assert.equal(blocks.length, expected);
  assert.deepEqual(blocks.map((b) => b.index), blocks.map((_, i) => i + 1));
});

Deno.test("parsePem round-trips DER and ignores text outside blocks", () => {
  const blocks = parsePem(SRC, `# comment\r\n${ca.pem}trailing words\n${ca.pem}`);
  assert.equal(blocks.length, 2);
  assert.deepEqual(blocks[0].der, new Uint8Array(ca.cert.rawData));
  assert.equal(encodePem("CERTIFICATE", blocks[0].der).trim(), ca.pem.trim());
});

Deno.test("a private key is rejected naming the source, without quoting it", () => {
  const text = ca.pem + ca.keyPem;
  assert.throws(() => parsePem(SRC, text), (e: unknown) => {
    assert.ok(e instanceof PemError);
    assert.match(e.message, /block 2 .* PRIVATE KEY.*never shipped/);
    const keyBody = ca.keyPem.split("\n")[1];
    assert.ok(!e.message.includes(keyBody), "message must not contain key material");
    return true;
  });
  rejects("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", /EC PRIVATE KEY/);
  rejects(
    "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    /never shipped/,
  );
});

Deno.test("other block types, headers and malformed blocks are rejected", () => {
  const body = ca.pem.split("\n").slice(1, -2).join("\n");
  rejects(
    `-----BEGIN TRUSTED CERTIFICATE-----\n${body}\n-----END TRUSTED CERTIFICATE-----\n`,
    /TRUSTED CERTIFICATE/,
  );
  rejects(`-----BEGIN X509 CRL-----\n${body}\n-----END X509 CRL-----\n`, /X509 CRL/);
  rejects(
    `-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\n${body}\n-----END CERTIFICATE-----\n`,
    /PEM headers/,
  );
  rejects(`-----BEGIN CERTIFICATE-----\n${body}\n`, /not terminated/);
  rejects(`-----BEGIN CERTIFICATE-----\n${body}\n${ca.pem}`, /not terminated/);
  rejects(`-----BEGIN CERTIFICATE-----\n${body}\n-----END PUBLIC KEY-----\n`, /does not match/);
  rejects(`-----BEGIN CERTIFICATE-----\n${body}!!\n-----END CERTIFICATE-----\n`, /invalid base64/);
  rejects(`-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n`, /invalid base64/);
  rejects(`${body}\n-----END CERTIFICATE-----\n`, /END marker without a BEGIN/);
  rejects("", /no CERTIFICATE block/);
  rejects("just some text\n", /no CERTIFICATE block/);
});
