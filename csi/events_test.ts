import assert from "node:assert/strict";
import { DRIVER_NAME } from "../api/mod.ts";
import { type EventBody, KubeEventRecorder, UPDATE_FAILED_REASON } from "./events.ts";

Deno.test("an Event names the pod, the driver and the node, with the clock's time and a capped message", async () => {
  const calls: { namespace: string; body: EventBody }[] = [];
  const at = new Date("2026-01-02T03:04:05Z");
  const recorder = new KubeEventRecorder({
    core: {
      createNamespacedEvent: (param) => {
        calls.push(param);
        return Promise.resolve(param.body);
      },
    },
    driverName: DRIVER_NAME,
    nodeId: "node-1",
    now: () => at,
  });
  await recorder.record({
    pod: { namespace: "shop", name: "web", uid: "" },
    type: "Warning",
    reason: UPDATE_FAILED_REASON,
    message: "x".repeat(2000),
  });
  assert.equal(calls.length, 1);
  const { namespace, body } = calls[0];
  assert.equal(namespace, "shop");
  assert.deepEqual(body.metadata, { generateName: "web.", namespace: "shop" });
  assert.deepEqual(body.involvedObject, {
    apiVersion: "v1",
    kind: "Pod",
    namespace: "shop",
    name: "web",
    uid: undefined,
  });
  assert.equal(body.type, "Warning");
  assert.equal(body.reason, "TrustStoreUpdateFailed");
  assert.equal(body.message.length, 1000);
  assert.deepEqual(body.source, { component: DRIVER_NAME, host: "node-1" });
  assert.equal(body.reportingInstance, "node-1");
  assert.equal(body.firstTimestamp, at);
  assert.equal(body.lastTimestamp, at);
});

Deno.test("a failed Event create rejects, for the caller to log", async () => {
  const recorder = new KubeEventRecorder({
    core: { createNamespacedEvent: () => Promise.reject(new Error("HTTP 403")) },
    driverName: "d",
    nodeId: "n",
  });
  await assert.rejects(
    recorder.record({
      pod: { namespace: "a", name: "b", uid: "u" },
      type: "Warning",
      reason: "R",
      message: "m",
    }),
    /HTTP 403/,
  );
});
