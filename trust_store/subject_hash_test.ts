import assert from "node:assert/strict";
import { join } from "node:path";
import { parseCertificate, parsePem, subjectHash } from "./mod.ts";
import { run } from "./testdata/run.ts";
import { makeCert } from "./testdata/pki.ts";
import { children, concat, encodeElement, encodeOid, readElement } from "./der.ts";
import { encodePem } from "./pem.ts";

async function opensslHash(pem: string): Promise<string> {
  const r = await run("openssl", ["x509", "-subject_hash", "-noout"], pem);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

function ourHash(pem: string): string {
  const [block] = parsePem("test", pem);
  return subjectHash(parseCertificate(block.der, "test").subjectDer);
}

Deno.test("subject hash equals openssl's on every certificate of the system bundle", async () => {
  const text = Deno.readTextFileSync("/etc/ssl/certs/ca-certificates.crt");
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
  assert.ok(pems.length >= 100, `only ${pems.length} certificates`);
  const mismatches: string[] = [];
  for (let i = 0; i < pems.length; i += 16) {
    const batch = pems.slice(i, i + 16);
    const theirs = await Promise.all(batch.map(opensslHash));
    batch.forEach((pem, j) => {
      const ours = ourHash(pem);
      if (ours !== theirs[j]) mismatches.push(`#${i + j}: ours ${ours}, openssl ${theirs[j]}`);
    });
  }
  assert.deepEqual(mismatches, []);
});

// string_mask values (OpenSSL B_ASN1_* bits) that force a string type for the subject values.
const MASKS: Record<string, string> = {
  utf8: "utf8only",
  printable_t61: "nombstr",
  t61: "MASK:0x4",
  bmp: "MASK:0x800",
  universal: "MASK:0x100",
  pkix: "pkix",
};

const SUBJECTS: { subj: string; multi?: boolean }[] = [
  { subj: "/CN=Plain Root CA/O=Example Org/C=DE" },
  { subj: "/CN=  Leading   and trailing  /O=ACME   Corp\t\tTabs" },
  { subj: "/CN=MiXeD CaSe ÄÖÜ Straße/O=ÉCOLE Polytechnique" },
  { subj: "/CN=日本語の認証局/O=Tëst \u00a0NBSP" },
  { subj: "/CN=Emoji 🔐 Root/OU=Ünïcödé" },
  { subj: "/CN=B+CN=a/O=multi", multi: true },
  { subj: "/O=Zeta+CN=alpha  beta+OU=  Mid /C=US", multi: true },
  { subj: "/CN=  X  +CN=x/O=dup", multi: true },
  { subj: "/DC=COM/DC=Example/UID=ABC/emailAddress=Admin@Example.COM/CN=Dc Root" },
  { subj: "/serialNumber=0042/CN=With Serial/street=Main Street 1" },
];

Deno.test("subject hash equals openssl's on unusual subjects and string types", async () => {
  const dir = await Deno.makeTempDir({ prefix: "subject-hash-" });
  try {
    await run("openssl", [
      "genpkey",
      "-algorithm",
      "EC",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-out",
      join(dir, "k.pem"),
    ]);
    const seenTags = new Set<number>();
    let n = 0;
    for (const [maskName, mask] of Object.entries(MASKS)) {
      const cfg = join(dir, `${maskName}.cnf`);
      await Deno.writeTextFile(
        cfg,
        `[req]\ndistinguished_name = dn\nstring_mask = ${mask}\nprompt = no\n[dn]\nCN = x\n`,
      );
      for (const { subj, multi } of SUBJECTS) {
        const args = [
          "req",
          "-x509",
          "-new",
          "-key",
          join(dir, "k.pem"),
          "-config",
          cfg,
          "-utf8",
          "-subj",
          subj,
          "-days",
          "1",
        ];
        if (multi) args.push("-multivalue-rdn");
        const r = await run("openssl", args);
        if (r.code !== 0) {
          // A mask may not be able to carry some characters (e.g. T61 and emoji): openssl
          // refuses; nothing to compare then.
          assert.match(
            r.stderr,
            /string|character|mask|too long/i,
            `${maskName} ${subj}: ${r.stderr}`,
          );
          continue;
        }
        const [block] = parsePem("generated", r.stdout);
        const cert = parseCertificate(block.der, "generated");
        for (const t of [0x0c, 0x13, 0x14, 0x16, 0x1c, 0x1e]) {
          if (cert.subjectDer.includes(t)) seenTags.add(t);
        }
        assert.equal(
          subjectHash(cert.subjectDer),
          await opensslHash(r.stdout),
          `${maskName} ${subj}`,
        );
        n++;
      }
    }
    assert.ok(n >= 45, `only ${n} generated subjects compared`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openssl-made BMPString, T61String and UTF8String values hash the same", async () => {
  const dir = await Deno.makeTempDir({ prefix: "subject-hash-types-" });
  try {
    const tags: Record<string, number> = { t61: 0x14, bmp: 0x1e, utf8: 0x0c };
    for (const [maskName, tag] of Object.entries(tags)) {
      const cfg = join(dir, `${maskName}.cnf`);
      await Deno.writeTextFile(
        cfg,
        `[req]\ndistinguished_name = dn\nstring_mask = ${
          MASKS[maskName]
        }\nprompt = no\n[dn]\nCN = x\n`,
      );
      const r = await run("openssl", [
        "req",
        "-x509",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        join(dir, "k2.pem"),
        "-config",
        cfg,
        "-utf8",
        "-subj",
        "/CN=Ça  VA Bien ",
        "-days",
        "1",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const out = await run("openssl", ["asn1parse"], r.stdout);
      const expectedName = {
        0x14: "T61STRING",
        0x1e: "BMPSTRING",
        0x1c: "UNIVERSALSTRING",
        0x0c: "UTF8STRING",
      }[tag]!;
      assert.match(
        out.stdout,
        new RegExp(expectedName),
        `${maskName} did not produce ${expectedName}`,
      );
      assert.equal(ourHash(r.stdout), await opensslHash(r.stdout), maskName);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Builds a Name from RDNs of [oid, tag, content] and splices it in as a certificate's subject. */
function withSubject(certDer: Uint8Array, rdns: [string, number, Uint8Array][][]): string {
  const name = encodeElement(
    0x30,
    concat(rdns.map((rdn) =>
      encodeElement(
        0x31,
        concat(rdn.map(([oid, tag, content]) =>
          encodeElement(0x30, concat([encodeOid(oid), encodeElement(tag, content)]))
        )),
      )
    )),
  );
  const cert = readElement(certDer, 0);
  const [tbs, ...rest] = children(certDer, cert);
  const fields = children(certDer, tbs);
  const parts = fields.map((f) => certDer.subarray(f.start, f.end));
  parts[fields[0].tag === 0xa0 ? 5 : 4] = name;
  const newTbs = encodeElement(0x30, concat(parts));
  const der = encodeElement(
    0x30,
    concat([newTbs, ...rest.map((r) => certDer.subarray(r.start, r.end))]),
  );
  return encodePem("CERTIFICATE", der);
}

const utf8 = (s: string) => new TextEncoder().encode(s);
const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const bmp = (s: string) => {
  const out = new Uint8Array(s.length * 2);
  for (let i = 0; i < s.length; i++) {
    out[i * 2] = s.charCodeAt(i) >> 8;
    out[i * 2 + 1] = s.charCodeAt(i) & 0xff;
  }
  return out;
};
const univ = (s: string) => {
  const cps = [...s].map((c) => c.codePointAt(0)!);
  const out = new Uint8Array(cps.length * 4);
  cps.forEach((cp, i) => new DataView(out.buffer).setUint32(i * 4, cp));
  return out;
};

Deno.test("subject hash handles hand-built UniversalString, BMPString, T61String and odd names", async () => {
  // openssl req cannot emit UniversalString (or unsorted multi-valued RDNs) for directory
  // attributes, so these subjects are spliced into an existing certificate; openssl does not
  // check the signature when computing -subject_hash.
  const template = parsePem("template", (await makeCert({ subject: "CN=template" })).pem)[0].der;
  const CN = "2.5.4.3",
    O = "2.5.4.10",
    OU = "2.5.4.11",
    C = "2.5.4.6",
    EMAIL = "1.2.840.113549.1.9.1";
  const cases: [string, number, Uint8Array][][][] = [
    [[[CN, 0x1c, univ("  Ça  VA Bien 🔐 ")]], [[O, 0x1e, bmp("ÄCME\tCorp  ")]]],
    [[[CN, 0x1e, bmp("MiXeD  Case")], [OU, 0x1c, univ("UNIT")]]],
    [[[CN, 0x14, latin1("T61 \xe9t\xe9  ROOT")]], [[C, 0x13, latin1("DE")]]],
    [[[CN, 0x16, latin1("\v\f IA5\r\nValue \t")]], [[EMAIL, 0x16, latin1("Admin@Example.COM")]]],
    [[[CN, 0x0c, utf8("B")], [CN, 0x0c, utf8("a")]]], // order changes after lower-casing
    [[[O, 0x13, latin1("Zeta")], [CN, 0x1c, univ("alpha  beta")], [OU, 0x1e, bmp(" Mid ")]]],
    [[[CN, 0x0c, utf8("x")], [CN, 0x13, latin1("  X  ")]]], // equal after canonicalisation
    [[[CN, 0x12, latin1("12345")]], [[O, 0x0c, utf8("NumericString kept as is")]]],
    [[[CN, 0x0c, utf8("")]], [[O, 0x0c, utf8("   ")]]],
    [[[CN, 0x0c, utf8("日本語  の\u3000認証局")]]],
  ];
  for (const rdns of cases) {
    const pem = withSubject(template, rdns);
    assert.equal(
      ourHash(pem),
      await opensslHash(pem),
      JSON.stringify(rdns.map((r) => r.map((e) => e[0]))),
    );
  }
  const out = await run("openssl", ["asn1parse"], withSubject(template, cases[0]));
  assert.match(out.stdout, /UNIVERSALSTRING/);
  assert.match(out.stdout, /BMPSTRING/);
});

Deno.test("subject hash of an empty subject is SHA-1 of nothing, as in openssl", () => {
  // SEQUENCE {} -> SHA-1("") = da39a3ee..., little-endian first 4 bytes.
  assert.equal(subjectHash(new Uint8Array([0x30, 0x00])), "eea339da");
});
