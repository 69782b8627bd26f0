import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { DevCa } from "../x509/mod.ts";
import { CsiError } from "./errors.ts";
import { SOURCE_FORBIDDEN_REASON, UPDATE_FAILED_REASON } from "./events.ts";
import { caSecret, harness, readStore } from "./_test_utils.ts";

const BUNDLE = "ca-certificates.crt";
const [ca1, ca2] = await Promise.all([DevCa.create(1), DevCa.create(2)]);

function holds(bundle: string, pem: string): boolean {
  const body = (text: string) => text.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
  return body(bundle).includes(body(pem));
}

function teamClass(...secrets: [string, string][]): Record<string, unknown> {
  return {
    metadata: { resourceVersion: crypto.randomUUID() },
    spec: { refs: secrets.map(([namespace, name]) => ({ kind: "Secret", namespace, name })) },
  };
}

const GRANT = "kubectl create rolebinding spire-cacerts-csi-source-reader " +
  "--clusterrole=spire-cacerts-csi-source-reader " +
  "--serviceaccount=spire-cacerts:spire-cacerts-csi -n team";

Deno.test("a first publish the driver may not read for is PERMISSION_DENIED with one Event naming the RoleBinding", async () => {
  const h = await harness({ allowedRefNamespaces: ["team"] });
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", teamClass(["team", "ca"]));
    h.objects.fail("Secret", "team", "ca", { code: 403 });
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(h.server.publish(h.publishRequest("v1")), (e: unknown) => {
        assert.ok(e instanceof CsiError);
        assert.equal(e.code, status.PERMISSION_DENIED);
        assert.ok(e.message.includes(GRANT), e.message);
        assert.match(e.message, /namespace "team".*\(pod shop\/web\)$/);
        return true;
      });
    }
    assert.equal(h.events.events.length, 1, "kubelet's retry of the same failure adds no Event");
    const [event] = h.events.events;
    assert.equal(event.type, "Warning");
    assert.equal(event.reason, SOURCE_FORBIDDEN_REASON);
    assert.deepEqual(event.pod, { namespace: "shop", name: "web", uid: "uid-1" });
    assert.ok(event.message.includes(GRANT), event.message);
    assert.equal(h.server.volumeCount, 0);

    // Granted: the object becomes readable and the next publish succeeds.
    h.objects.put("Secret", "team", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca1.certPem));
  } finally {
    await h.close();
  }
});

Deno.test("a source that becomes Forbidden after a publish keeps the last good store; republish succeeds", async () => {
  const h = await harness({ allowedRefNamespaces: ["team"] });
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", teamClass(["shop", "ca"]));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    h.objects.fail("Secret", "team", "extra", { code: 403 });
    h.objects.put(
      "CAProviderClass",
      "shop",
      "spire-ca",
      teamClass(["shop", "ca"], ["team", "extra"]),
    );
    await h.server.idle();
    await h.server.publish(h.publishRequest("v1"));
    const store = await readStore(h.target("v1"), BUNDLE);
    assert.ok(holds(store, ca1.certPem));
    assert.ok(!holds(store, ca2.certPem));
    const reasons = h.events.events.map((e) => e.reason);
    assert.deepEqual(reasons, [UPDATE_FAILED_REASON], "an update failure, not a refused mount");
    assert.ok(h.events.events[0].message.includes(GRANT), h.events.events[0].message);

    h.objects.put("Secret", "team", "extra", caSecret(ca2.certPem));
    await h.server.idle();
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca2.certPem));
  } finally {
    await h.close();
  }
});
