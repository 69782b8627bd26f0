import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { DevCa } from "../x509/mod.ts";
import { DerSplitError, splitDer, svidSetFromWire } from "./mod.ts";

Deno.test("splitDer splits concatenated certificates and rejects broken data", async () => {
  const [a, b] = [await DevCa.create(1), await DevCa.create(2)];
  const da = new Uint8Array(new X509Certificate(a.certPem).raw);
  const db = new Uint8Array(new X509Certificate(b.certPem).raw);
  const both = new Uint8Array([...da, ...db]);
  const parts = splitDer(both);
  assert.deepEqual(parts.map((p) => p.length), [da.length, db.length]);
  assert.deepEqual([...parts[1]], [...db]);
  assert.throws(() => splitDer(both.subarray(0, both.length - 1)), DerSplitError);
  assert.throws(() => splitDer(new Uint8Array([0x04, 0x01, 0x00])), /no SEQUENCE/);
  assert.throws(() => splitDer(new Uint8Array([0x30, 0x85, 1, 1, 1, 1, 1])), /bad length/);
});

Deno.test("svidSetFromWire verifies the key and chain like a file set", async () => {
  const ca = await DevCa.create();
  const svid = await ca.issue({ spiffeId: "spiffe://example.org/w", ttlMs: 60_000 });
  const other = await ca.issue({ spiffeId: "spiffe://example.org/w", ttlMs: 60_000 });
  const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);
  const key = (pem: string) => Uint8Array.fromBase64(pem.replace(/-----[A-Z ]+-----|\s/g, ""));
  const wire = {
    spiffeId: "spiffe://example.org/w",
    x509Svid: der(svid.certPem),
    x509SvidKey: key(svid.keyPem),
    bundle: der(ca.certPem),
    hint: "",
  };
  assert.equal(svidSetFromWire("agent", wire).spiffeId?.toString(), "spiffe://example.org/w");
  assert.throws(
    () => svidSetFromWire("agent", { ...wire, x509SvidKey: key(other.keyPem) }),
    { name: "SvidKeyMismatchError" },
  );
});
