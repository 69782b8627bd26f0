import assert from "node:assert/strict";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { DevCa } from "../x509/mod.ts";
import { CsiError } from "./errors.ts";
import { UPDATE_FAILED_REASON } from "./events.ts";
import { PUBLISH_TOTAL, STORE_WRITES, UPDATE_FAILURES } from "./metrics.ts";
import { DATA_LINK } from "./node_server.ts";
import { caSecret, harness, readStore, secretClass } from "./_test_utils.ts";

const BUNDLE = "ca-certificates.crt";
const [ca1, ca2] = await Promise.all([DevCa.create(1), DevCa.create(2)]);

/** Whether a PEM bundle holds the certificate of `pem` (compared by its base64 body). */
function holds(bundle: string, pem: string): boolean {
  const body = (text: string) => text.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
  return body(bundle).includes(body(pem));
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

Deno.test("a first publish mounts a tmpfs, renders the store into the target and saves the record", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    const target = h.target("v1");
    assert.ok(h.mounter.mounted.has(target));
    assert.ok(holds(await readStore(target, BUNDLE), ca1.certPem));
    await Deno.lstat(join(target, DATA_LINK));
    assert.deepEqual(h.state.records.get("v1")?.classes, [{ namespace: "shop", name: "spire-ca" }]);
    assert.equal(h.state.records.get("v1")?.mounted, true);
    assert.equal(h.objects.refs("Secret", "shop", "ca"), 1);
    assert.equal(h.server.volumeCount, 1);
    assert.equal(h.server.metrics.value(PUBLISH_TOTAL, { result: "ok" }), 1);
  } finally {
    await h.close();
  }
});

Deno.test("a first publish whose class is missing fails NOT_FOUND and leaves no mount, record or watch", async () => {
  const h = await harness();
  try {
    await assert.rejects(h.server.publish(h.publishRequest("v1")), (e: unknown) => {
      assert.ok(e instanceof CsiError);
      assert.equal(e.code, status.NOT_FOUND);
      assert.match(e.message, /CAProviderClass shop\/spire-ca not found \(pod shop\/web\)/);
      return true;
    });
    assert.equal(h.mounter.mounted.size, 0);
    assert.equal(h.state.records.size, 0);
    assert.equal(h.objects.size, 0);
    assert.deepEqual([...Deno.readDirSync(h.target("v1"))], []);
    assert.equal(h.server.metrics.value(PUBLISH_TOTAL, { result: "error" }), 1);
  } finally {
    await h.close();
  }
});

Deno.test("a plain-dir publish writes the store without mounting", async () => {
  const h = await harness({ plainDir: true });
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    assert.equal(h.mounter.mounts, 0);
    assert.equal(h.state.records.get("v1")?.mounted, false);
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca1.certPem));
  } finally {
    await h.close();
  }
});

Deno.test("a republish returns no error even when a source broke, and the last good store stays", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    h.objects.put("Secret", "shop", "ca", null);
    await h.server.idle();
    await h.server.publish(h.publishRequest("v1"));
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca1.certPem));
    assert.equal(h.server.metrics.value(PUBLISH_TOTAL, { result: "republish" }), 1);
    assert.equal(h.server.metrics.value(UPDATE_FAILURES, { reason: "source" }), 2);
  } finally {
    await h.close();
  }
});

Deno.test("a republish of a volume at another target path fails ALREADY_EXISTS", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    const moved = { ...h.publishRequest("v1"), targetPath: h.target("v2") };
    await assert.rejects(h.server.publish(moved), (e: unknown) => {
      assert.ok(e instanceof CsiError);
      assert.equal(e.code, status.ALREADY_EXISTS);
      return true;
    });
  } finally {
    await h.close();
  }
});

Deno.test("a republish whose store was deleted renders it again", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    for (const entry of Deno.readDirSync(h.target("v1"))) {
      await Deno.remove(join(h.target("v1"), entry.name), { recursive: true });
    }
    await h.server.publish(h.publishRequest("v1"));
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca1.certPem));
  } finally {
    await h.close();
  }
});

Deno.test("unpublish unmounts, empties the target, removes the record and releases every watch", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    await h.server.unpublish(h.unpublishRequest("v1"));
    assert.equal(h.mounter.mounted.size, 0);
    assert.equal(h.mounter.unmounts, 1);
    assert.deepEqual([...Deno.readDirSync(h.target("v1"))], []);
    assert.equal(h.state.records.size, 0);
    assert.equal(h.objects.size, 0);
    assert.equal(h.server.volumeCount, 0);
    await h.server.unpublish(h.unpublishRequest("v1"));
    assert.equal(h.mounter.unmounts, 1, "a second unpublish is a no-op");
  } finally {
    await h.close();
  }
});

Deno.test("a restarted server reloads its records, takes the watches again and follows changes", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    await h.state.save({ ...h.state.records.get("v1")!, volumeId: "gone", targetPath: "/nope" });
    await h.server.stop();
    assert.equal(h.objects.size, 0);

    const server = h.restart();
    assert.deepEqual(await server.restore(), { resumed: 1, forgotten: 1 });
    await server.idle();
    assert.deepEqual([...h.state.records.keys()], ["v1"]);
    assert.equal(h.objects.refs("CAProviderClass", "shop", "spire-ca"), 1);
    assert.equal(h.objects.refs("Secret", "shop", "ca"), 1);
    h.objects.put("Secret", "shop", "ca", caSecret(ca2.certPem));
    await server.idle();
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca2.certPem));
  } finally {
    await h.close();
  }
});

Deno.test("a source change re-renders every volume that reads it and no other", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("CAProviderClass", "shop", "other", secretClass("other"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    h.objects.put("Secret", "shop", "other", caSecret(ca1.certPem));
    for (const v of ["v1", "v2", "v3"]) await h.server.publish(h.publishRequest(v));
    await h.server.publish(h.publishRequest("v4", "other"));
    const writes = h.server.metrics.value(STORE_WRITES);
    h.objects.put("Secret", "shop", "ca", caSecret(ca2.certPem));
    await h.server.idle();
    for (const v of ["v1", "v2", "v3"]) {
      assert.ok(holds(await readStore(h.target(v), BUNDLE), ca2.certPem), v);
    }
    assert.ok(holds(await readStore(h.target("v4"), BUNDLE), ca1.certPem));
    assert.equal(h.server.metrics.value(STORE_WRITES), writes + 3);
  } finally {
    await h.close();
  }
});

Deno.test("a failed update keeps the last good store, records one Warning Event per failure and counts it", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    await h.server.publish(h.publishRequest("v1"));
    h.objects.put("Secret", "shop", "ca", caSecret("not a certificate"));
    await h.server.idle();
    h.objects.put("Secret", "shop", "ca", caSecret("not a certificate"));
    await h.server.idle();
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca1.certPem));
    assert.equal(h.server.metrics.value(UPDATE_FAILURES, { reason: "source" }), 2);
    assert.equal(h.events.events.length, 1, "the same failure again records no second Event");
    const [event] = h.events.events;
    assert.equal(event.type, "Warning");
    assert.equal(event.reason, UPDATE_FAILED_REASON);
    assert.deepEqual(event.pod, { namespace: "shop", name: "web", uid: "uid-1" });
    assert.match(event.message, /^Keeping the last good trust store: .*Secret shop\/ca/);
    const req = { volumeId: "v1", volumePath: h.target("v1"), stagingTargetPath: "" };
    const failed = await h.server.stats(req);
    assert.equal(failed.volumeCondition.abnormal, true);
    assert.match(failed.volumeCondition.message, /^serving the last good trust store/);

    h.objects.put("Secret", "shop", "ca", caSecret(ca2.certPem));
    await h.server.idle();
    assert.ok(holds(await readStore(h.target("v1"), BUNDLE), ca2.certPem));
    assert.deepEqual((await h.server.stats(req)).volumeCondition, {
      abnormal: false,
      message: "trust store current",
    });
  } finally {
    await h.close();
  }
});

Deno.test("an unreadable source (403) fails the first publish PERMISSION_DENIED with the fix", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.fail("Secret", "shop", "ca", {
      code: 403,
      body: { message: "secrets is forbidden" },
    });
    await assert.rejects(h.server.publish(h.publishRequest("v1")), (e: unknown) => {
      assert.ok(e instanceof CsiError);
      assert.equal(e.code, status.PERMISSION_DENIED);
      assert.match(
        e.message,
        /HTTP 403: secrets is forbidden; the driver's ServiceAccount .* `kubectl create rolebinding /,
      );
      return true;
    });
  } finally {
    await h.close();
  }
});

Deno.test("two publishes of the same volume run one after the other: one mount, one render", async () => {
  const h = await harness();
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    const open = h.objects.hold();
    const first = h.server.publish(h.publishRequest("v1"));
    while (h.objects.inFlight === 0) await tick();
    const second = h.server.publish(h.publishRequest("v1"));
    await tick();
    assert.equal(h.objects.acquires, 1, "the second publish waits for the first");
    open();
    await Promise.all([first, second]);
    assert.equal(h.mounter.mounts, 1);
    assert.equal(h.server.metrics.value(PUBLISH_TOTAL, { result: "ok" }), 1);
    assert.equal(h.server.metrics.value(PUBLISH_TOTAL, { result: "republish" }), 1);
  } finally {
    await h.close();
  }
});

Deno.test("re-renders after a change run at most renderConcurrency at a time", async () => {
  const h = await harness({ renderConcurrency: 2 });
  try {
    h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
    h.objects.put("Secret", "shop", "ca", caSecret(ca1.certPem));
    const volumes = ["v1", "v2", "v3", "v4", "v5"];
    for (const v of volumes) await h.server.publish(h.publishRequest(v));
    h.objects.maxInFlight = 0;
    const open = h.objects.hold();
    h.objects.put("Secret", "shop", "ca", caSecret(ca2.certPem));
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(h.objects.inFlight, 2);
    open();
    await h.server.idle();
    assert.equal(h.objects.maxInFlight, 2);
    for (const v of volumes) assert.ok(holds(await readStore(h.target(v), BUNDLE), ca2.certPem));
  } finally {
    await h.close();
  }
});
