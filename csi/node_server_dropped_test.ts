/**
 * Certificates a volume's store is written without (expired, not yet valid, not a CA, ...): one
 * warn line, one count in `cacerts_csi_certificates_dropped_total{reason}` per distinct
 * certificate per volume, one `TrustStoreCertificateDropped` Warning Event per distinct set, none
 * of them repeated when the volume re-renders with the same certificates dropped; base roots are
 * reported once per process and never in a pod's Event.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createLogger } from "../cli/mod.ts";
import { makeCert, type TestCert } from "../trust_store/testdata/pki.ts";
import { CERTIFICATE_DROPPED_REASON } from "./events.ts";
import { CERTIFICATES_DROPPED } from "./metrics.ts";
import { caSecret, harness, readStore, secretClass } from "./_test_utils.ts";

const DAY = 86_400_000;
const BUNDLE = "ca-certificates.crt";
const good = await makeCert({ subject: "CN=Good CA" });
const good2 = await makeCert({ subject: "CN=Good CA 2" });
const expired = await makeCert({
  subject: "CN=Expired CA",
  notBefore: new Date(Date.now() - 10 * DAY),
  notAfter: new Date(Date.now() - DAY),
});
const future = await makeCert({
  subject: "CN=Future CA",
  notBefore: new Date(Date.now() + DAY),
  notAfter: new Date(Date.now() + 10 * DAY),
});
const leaf = await makeCert({ subject: "CN=leaf", issuer: good, ca: false });

const pem = (...certs: TestCert[]) => certs.map((c) => c.pem).join("");
const body = (text: string) => text.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");

/** A harness whose warn lines are kept, parsed. */
async function logged(options: Parameters<typeof harness>[0] = {}) {
  const lines: Record<string, unknown>[] = [];
  const h = await harness({
    logger: createLogger("warn", (line) => lines.push(JSON.parse(line))),
    ...options,
  });
  const dropLines = () => lines.filter((l) => l.msg === "certificate dropped from the trust store");
  const dropEvents = () => h.events.events.filter((e) => e.reason === CERTIFICATE_DROPPED_REASON);
  return { h, dropLines, dropEvents };
}

Deno.test("a store written without certificates reports each once: warn line, counter by reason, one Warning Event", async () => {
  const { h, dropLines, dropEvents } = await logged();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good, expired, leaf)));
    await h.server.publish(h.publishRequest("v1"));
    const bundle = await readStore(h.target("v1"), BUNDLE);
    assert.ok(body(bundle).includes(body(good.pem)));
    assert.ok(!body(bundle).includes(body(expired.pem)));
    assert.ok(!body(bundle).includes(body(leaf.pem)));

    const m = h.server.metrics;
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "expired" }), 1);
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "non_ca" }), 1);
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "not_yet_valid" }), 0);
    const lines = dropLines();
    assert.deepEqual(lines.map((l) => [l.subject, l.reason, l.source, l.volumeId, l.pod]), [
      ["CN=Expired CA", "expired", "Secret shop/ca key ca.crt", "v1", "shop/web"],
      ["CN=leaf", "non_ca", "Secret shop/ca key ca.crt", "v1", "shop/web"],
    ]);
    assert.match(String(lines[0].sha256), /^[0-9a-f]{64}$/);
    assert.equal(lines[0].level, "warn");
    const events = dropEvents();
    assert.equal(events.length, 1);
    assert.equal(events[0].type, "Warning");
    assert.deepEqual(events[0].pod, { namespace: "shop", name: "web", uid: "uid-1" });
    assert.match(events[0].message, /without 2 certificates/);
    assert.match(
      events[0].message,
      /CN=Expired CA \(sha256 [0-9a-f]{16}\) from Secret shop\/ca key ca\.crt: expired/,
    );
    assert.match(events[0].message, /CN=leaf .*: non_ca/);

    // A change that keeps the same certificates dropped re-renders and reports nothing again.
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good, good2, expired, leaf)));
    await h.server.idle();
    assert.ok(body(await readStore(h.target("v1"), BUNDLE)).includes(body(good2.pem)));
    // Nor does a republish of the same inputs.
    await h.server.publish(h.publishRequest("v1"));
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "expired" }), 1);
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "non_ca" }), 1);
    assert.equal(dropLines().length, 2);
    assert.equal(dropEvents().length, 1);

    // A new dropped certificate is a new set: its own line and count, one more Event.
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good, expired, leaf, future)));
    await h.server.idle();
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "not_yet_valid" }), 1);
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "expired" }), 1);
    assert.deepEqual(dropLines().slice(2).map((l) => [l.subject, l.reason]), [
      ["CN=Future CA", "not_yet_valid"],
    ]);
    assert.equal(dropEvents().length, 2);
    assert.match(dropEvents()[1].message, /without 3 certificates/);

    // Fixed: nothing dropped, no Event. Broken again the same way: reported again (a new drop).
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good)));
    await h.server.idle();
    assert.equal(dropEvents().length, 2);
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good, expired)));
    await h.server.idle();
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "expired" }), 2);
    assert.equal(dropEvents().length, 3);
  } finally {
    await h.close();
  }
});

Deno.test("each volume counts its own dropped certificates and gets its own Event", async () => {
  const { h, dropLines, dropEvents } = await logged();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good, expired)));
    await h.server.publish(h.publishRequest("v1"));
    await h.server.publish(h.publishRequest("v2"));
    assert.equal(h.server.metrics.value(CERTIFICATES_DROPPED, { reason: "expired" }), 2);
    assert.deepEqual(dropLines().map((l) => l.volumeId), ["v1", "v2"]);
    assert.equal(dropEvents().length, 2);
  } finally {
    await h.close();
  }
});

Deno.test("a dropped base root is logged and counted once per process, never in a pod's Event", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dropped_base_" });
  const path = join(dir, "roots.pem");
  await Deno.writeTextFile(path, pem(good2, expired));
  const { h, dropLines, dropEvents } = await logged({ baseRoots: { kind: "file", path } });
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good)));
    await h.server.publish(h.publishRequest("v1"));
    await h.server.publish(h.publishRequest("v2"));
    h.objects.put("Secret", "shop", "ca", caSecret(pem(good, leaf)));
    await h.server.idle();
    const m = h.server.metrics;
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "expired" }), 1);
    assert.equal(m.value(CERTIFICATES_DROPPED, { reason: "non_ca" }), 2);
    const base = dropLines().filter((l) => l.base === true);
    assert.deepEqual(base.map((l) => [l.subject, l.source]), [
      ["CN=Expired CA", `base roots file ${path}`],
    ]);
    assert.equal(base[0].volumeId, undefined);
    // Only the leaf (a custom source) is named, once per volume.
    assert.equal(dropEvents().length, 2);
    for (const e of dropEvents()) {
      assert.doesNotMatch(e.message, /Expired CA/);
      assert.match(e.message, /without 1 certificate its sources hold: CN=leaf/);
    }
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});
