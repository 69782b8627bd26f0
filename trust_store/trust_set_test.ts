import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { BaseRootsError, buildTrustSet, EmptyTrustSetError, PemError } from "./mod.ts";
import { makeCert } from "./testdata/pki.ts";
import { rawCa } from "./testdata/raw_cert.ts";

const DAY = 86400_000;
const root = await makeCert({ subject: "CN=Root A" });
const root2 = await makeCert({ subject: "CN=Root B" });
const inter = await makeCert({ subject: "CN=Intermediate", issuer: root });
const leaf = await makeCert({ subject: "CN=leaf", issuer: inter, ca: false });
const expired = await makeCert({
  subject: "CN=Expired",
  notBefore: new Date(Date.now() - 10 * DAY),
  notAfter: new Date(Date.now() - DAY),
});
const future = await makeCert({
  subject: "CN=Future",
  notBefore: new Date(Date.now() + DAY),
  notAfter: new Date(Date.now() + 10 * DAY),
});
const selfLeaf = await makeCert({ subject: "CN=Self leaf", ca: false });

const src = (name: string, ...certs: { pem: string }[]) => ({
  name,
  text: certs.map((c) => c.pem).join(""),
});
const subjects = (s: { certificates: readonly { subject: string }[] }) =>
  s.certificates.map((c) => c.subject);

Deno.test("dedupes by SHA-256 of the DER and warns naming both sources", async () => {
  const set = await buildTrustSet([src("A", root, root2), src("B", root)]);
  assert.equal(set.certificates.length, 2);
  assert.equal(set.customCount, 2);
  assert.equal(set.warnings.length, 1);
  assert.match(set.warnings[0], /duplicate CN=Root A .* from B ignored; first seen in A/);
});

Deno.test("order is deterministic: independent of source and block order", async () => {
  const a = await buildTrustSet([src("A", root, root2)]);
  const b = await buildTrustSet([src("B", root2), src("C", root)]);
  assert.deepEqual(a.certificates.map((c) => c.sha256), b.certificates.map((c) => c.sha256));
  const shas = a.certificates.map((c) => c.sha256);
  assert.deepEqual(shas, [...shas].sort());
});

Deno.test("filters drop expired, not-yet-valid, non-CA and intermediates, each with a warning", async () => {
  const set = await buildTrustSet([src("S", root, inter, leaf, expired, future, selfLeaf)]);
  assert.deepEqual(subjects(set), ["CN=Root A"]);
  const w = set.warnings.join("\n");
  assert.match(w, /dropped expired CN=Expired .* from S: notAfter/);
  assert.match(w, /dropped not yet valid CN=Future .*notBefore/);
  assert.match(w, /dropped non-CA CN=leaf/);
  assert.match(w, /dropped non-CA CN=Self leaf/);
  assert.match(w, /dropped intermediate CN=Intermediate .*keepIntermediates/);
  assert.equal(set.warnings.length, 5);
});

Deno.test("dropped lists each distinct dropped certificate with its reason, source and SHA-256; duplicates are not drops", async () => {
  const unloadable = rawCa({ serial: new Uint8Array([0x02, 0x02, 0x00, 0x01]) });
  const set = await buildTrustSet([
    src("S", root, inter, leaf, expired, future, expired),
    src("T", expired, root2, unloadable),
  ]);
  assert.deepEqual(
    set.dropped.map((d) => [d.reason, d.subject, d.source, d.fromBase]),
    [
      ["intermediate", "CN=Intermediate", "S", false],
      ["non_ca", "CN=leaf", "S", false],
      ["expired", "CN=Expired", "S", false],
      ["not_yet_valid", "CN=Future", "S", false],
      ["openssl_unloadable", "CN=Raw CA", "T", false],
    ],
  );
  const sha = createHash("sha256").update(new Uint8Array(expired.cert.rawData)).digest("hex");
  assert.equal(set.dropped[2].sha256, sha);
  assert.match(set.dropped[2].detail ?? "", /^notAfter \d{4}-/);
  assert.match(set.dropped[4].detail ?? "", /serial number/);
  assert.equal(set.dropped[3].notBefore?.getTime(), future.cert.notBefore.getTime());
  // Two duplicates of CN=Expired are warnings, not drops.
  assert.equal(set.warnings.length, 7);
  await assert.rejects(buildTrustSet([src("S", expired, leaf)]), (e: unknown) => {
    assert.ok(e instanceof EmptyTrustSetError);
    assert.deepEqual(e.dropped.map((d) => d.reason), ["expired", "non_ca"]);
    return true;
  });
});

Deno.test("each filter can be turned off; intermediates kept when asked", async () => {
  const all = [src("S", root, inter, leaf, expired, future)];
  const keep = await buildTrustSet(all, { keepIntermediates: true });
  assert.deepEqual(subjects(keep).sort(), ["CN=Intermediate", "CN=Root A"]);
  const exp = await buildTrustSet(all, { dropExpired: false });
  assert.ok(subjects(exp).includes("CN=Expired"));
  const fut = await buildTrustSet(all, { dropNotYetValid: false });
  assert.ok(subjects(fut).includes("CN=Future"));
  const any = await buildTrustSet(all, { requireCa: false });
  assert.deepEqual(subjects(any).sort(), ["CN=Intermediate", "CN=Root A", "CN=leaf"]);
  const later = await buildTrustSet(all, { now: new Date(Date.now() + 2 * DAY) });
  assert.ok(subjects(later).includes("CN=Future"));
});

Deno.test("an empty result is an error listing why; nothing partial is returned", async () => {
  await assert.rejects(
    buildTrustSet([src("S", expired, leaf)]),
    (e: unknown) => {
      assert.ok(e instanceof EmptyTrustSetError);
      assert.match(e.message, /refusing to write an empty trust store/);
      assert.match(e.message, /expired CN=Expired/);
      assert.equal(e.warnings.length, 2);
      return true;
    },
  );
  await assert.rejects(buildTrustSet([]), EmptyTrustSetError);
});

Deno.test("one bad source fails the build with its name; good sources are not published alone", async () => {
  await assert.rejects(
    buildTrustSet([src("good", root), { name: "ConfigMap x/y key bundle.crt", text: root.keyPem }]),
    (e: unknown) => e instanceof PemError && /ConfigMap x\/y key bundle.crt/.test(e.message),
  );
  const garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  await assert.rejects(
    buildTrustSet([{ name: "bad-der", text: garbage }]),
    (e: unknown) =>
      e instanceof PemError && /bad-der: block 1 is not a valid certificate/.test(e.message),
  );
});

Deno.test("base roots: bundled reports package and version; configurable paths", async () => {
  const set = await buildTrustSet([src("S", root)], { base: { kind: "bundled" } });
  assert.equal(set.base.kind, "bundled");
  if (set.base.kind !== "bundled") return;
  assert.equal(set.base.package, "ca-certificates");
  assert.match(set.base.version, /^\d{8}/);
  assert.ok(set.base.count >= 100);
  assert.equal(set.customCount, 1);
  assert.equal(set.certificates[0].subject, "CN=Root A", "custom certificates come first");
  assert.ok(set.certificates.slice(1).every((c) => c.fromBase));

  const dir = await Deno.makeTempDir();
  try {
    const bundle = join(dir, "roots.pem");
    await Deno.writeTextFile(bundle, root2.pem);
    const status = join(dir, "ca-certificates");
    await Deno.writeTextFile(
      status,
      "Package: ca-certificates\nStatus: install ok installed\nVersion: 20250419\n",
    );
    const distroless = await buildTrustSet([src("S", root)], {
      base: { kind: "bundled", path: bundle, statusPaths: [join(dir, "missing"), status] },
    });
    assert.deepEqual(distroless.base, {
      kind: "bundled",
      path: bundle,
      package: "ca-certificates",
      version: "20250419",
      count: 1,
    });
    const file = await buildTrustSet([src("S", root)], { base: { kind: "file", path: bundle } });
    assert.deepEqual(file.base, { kind: "file", path: bundle, count: 1 });
    assert.deepEqual(subjects(file), ["CN=Root A", "CN=Root B"]);
    const none = await buildTrustSet([src("S", root)], { base: { kind: "none" } });
    assert.deepEqual(none.base, { kind: "none" });
    assert.equal(none.certificates.length, 1);
    await assert.rejects(
      buildTrustSet([src("S", root)], { base: { kind: "file", path: join(dir, "nope.pem") } }),
      (e: unknown) => e instanceof BaseRootsError && e.message.includes("nope.pem"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
