import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { type AdmissionEvent, createApp, type RefusalEvent } from "./app.ts";
import { podCreateReview } from "./testdata/admission_review.ts";

const LIMIT = 1024;
const JSON_TYPE = { "content-type": "application/json" };
const POD = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "p", labels: { [INJECT_LABEL]: "true" } },
  spec: { containers: [{ name: "app", image: "x" }] },
};

function setup() {
  const events: AdmissionEvent[] = [];
  const refusals: RefusalEvent[] = [];
  const app = createApp({
    driverName: DRIVER_NAME,
    className: "spire-ca",
    maxBodyBytes: LIMIT,
    onAdmission: (event) => events.push(event),
    onRefused: (event) => refusals.push(event),
  });
  return { app, events, refusals };
}

/** Posts `init` to /mutate; returns the status, headers and the `{error}` body. */
async function refused(init: RequestInit) {
  const { app, events, refusals } = setup();
  const response = await app.request("/mutate", { method: "POST", ...init });
  const body = await response.json();
  assert.equal(refusals.length, 1, "one refusal per call");
  assert.equal(refusals[0].status, response.status);
  assert.deepEqual([refusals[0].method, refusals[0].path], ["POST", "/mutate"]);
  assert.deepEqual(Object.keys(body), ["error"], "no AdmissionReview is built for a 4xx");
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  assert.equal(events.length, 1, "one event per call");
  assert.equal(events[0].result, "bad_request");
  assert.equal(events[0].message, body.error, "the event carries the reason the client got");
  assert.ok(events[0].seconds >= 0);
  return {
    status: response.status,
    headers: response.headers,
    error: body.error as string,
    reason: refusals[0].reason,
  };
}

Deno.test("a declared body over the limit is 413 before it is read, and the connection closes", async () => {
  const body = "x".repeat(LIMIT + 1);
  const res = await refused({
    headers: { ...JSON_TYPE, "content-length": String(body.length) },
    body,
  });
  assert.equal(res.status, 413);
  assert.equal(res.error, `body of ${LIMIT + 1} bytes exceeds ${LIMIT} bytes`);
  assert.equal(res.reason, "body_too_large");
  assert.equal(res.headers.get("connection"), "close");
});

Deno.test("a streamed body is 413 once it passes the limit", async () => {
  const chunk = new TextEncoder().encode("y".repeat(512));
  const res = await refused({
    headers: JSON_TYPE,
    body: new ReadableStream({
      start(c) {
        for (let i = 0; i < 4; i++) c.enqueue(chunk);
        c.close();
      },
    }),
  });
  assert.equal(res.status, 413);
  assert.equal(res.error, `body exceeds ${LIMIT} bytes`);
  assert.equal(res.reason, "body_too_large");
});

Deno.test("a body at the limit is read (the limit is inclusive)", async () => {
  const { app, events } = setup();
  const text = JSON.stringify(podCreateReview(POD));
  const padded = text + " ".repeat(LIMIT - text.length);
  const response = await app.request("/mutate", {
    method: "POST",
    headers: JSON_TYPE,
    body: padded,
  });
  assert.equal(response.status, 200);
  assert.equal((await response.json()).response.patchType, "JSONPatch");
  assert.deepEqual(events.map((e) => e.result), ["mutated"]);
});

Deno.test("a wrong or missing content type is 415 with the type it got", async () => {
  const body = JSON.stringify(podCreateReview(POD));
  const wrong = await refused({ headers: { "content-type": "text/plain" }, body });
  assert.equal(wrong.status, 415);
  assert.equal(wrong.error, 'content type must be application/json, got "text/plain"');
  const missing = await refused({ body: new TextEncoder().encode(body) });
  assert.equal(missing.status, 415);
  assert.equal(missing.error, 'content type must be application/json, got ""');
  assert.deepEqual([wrong.reason, missing.reason], [
    "unsupported_media_type",
    "unsupported_media_type",
  ]);
});

Deno.test("a charset parameter on application/json is accepted", async () => {
  const { app } = setup();
  const response = await app.request("/mutate", {
    method: "POST",
    headers: { "content-type": "Application/JSON; charset=utf-8" },
    body: JSON.stringify(podCreateReview(POD)),
  });
  assert.equal(response.status, 200);
});

Deno.test("bad JSON, empty and non-UTF-8 bodies are 400 with the reason", async () => {
  const json = await refused({ headers: JSON_TYPE, body: '{"apiVersion": ' });
  assert.equal(json.status, 400);
  assert.match(json.error, /^body is not JSON: /);
  const empty = await refused({ headers: JSON_TYPE, body: "" });
  assert.equal(empty.status, 400);
  assert.equal(empty.error, "empty body");
  const none = await refused({ headers: JSON_TYPE });
  assert.equal(none.status, 400);
  assert.equal(none.error, "empty body");
  const bytes = await refused({ headers: JSON_TYPE, body: new Uint8Array([0x7b, 0xff, 0x7d]) });
  assert.equal(bytes.status, 400);
  assert.equal(bytes.error, "body is not valid UTF-8");
  assert.deepEqual([json.reason, empty.reason, none.reason, bytes.reason], [
    "invalid_json",
    "empty_body",
    "empty_body",
    "invalid_utf8",
  ]);
});

Deno.test("a JSON document that is not an admission.k8s.io/v1 AdmissionReview is 400 with the reason", async () => {
  const cases: [unknown, string][] = [
    [[], "body is not a JSON object"],
    [null, "body is not a JSON object"],
    [
      { ...podCreateReview(POD), apiVersion: "admission.k8s.io/v1beta1" },
      'apiVersion must be admission.k8s.io/v1, got "admission.k8s.io/v1beta1"',
    ],
    [
      { ...podCreateReview(POD), apiVersion: undefined },
      "apiVersion must be admission.k8s.io/v1, got null",
    ],
    [{ ...podCreateReview(POD), kind: "Pod" }, 'kind must be AdmissionReview, got "Pod"'],
    [
      { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" },
      "AdmissionReview has no request",
    ],
    [podCreateReview(POD, { uid: "" }), "AdmissionReview request has no uid"],
  ];
  for (const [document, reason] of cases) {
    const res = await refused({ headers: JSON_TYPE, body: JSON.stringify(document) });
    assert.equal(res.status, 400, reason);
    assert.equal(res.error, reason);
    assert.equal(res.reason, "not_admission_review");
  }
});

Deno.test("an unexpected error is a 500 with the message; only /mutate calls are admissions", async () => {
  const events: AdmissionEvent[] = [];
  const app = createApp({
    driverName: DRIVER_NAME,
    className: "spire-ca",
    onAdmission: (event) => events.push(event),
  });
  app.post("/boom", () => {
    throw new Error("kaput");
  });
  const response = await app.request("/boom", { method: "POST" });
  assert.equal(response.status, 500);
  assert.deepEqual(await response.json(), { error: "internal error: kaput" });
  assert.deepEqual(events, [], "only /mutate calls are admissions");
});

Deno.test("other routes and methods are 404 with the route to use, and are not admissions", async () => {
  const { app, events, refusals } = setup();
  const get = await app.request("/mutate");
  assert.equal(get.status, 404);
  assert.deepEqual(await get.json(), {
    error: "no route GET /mutate; the endpoint is POST /mutate",
  });
  assert.equal((await app.request("/other", { method: "POST" })).status, 404);
  assert.deepEqual(events, []);
  assert.deepEqual(refusals, [
    { status: 404, reason: "not_found", method: "GET", path: "/mutate" },
    { status: 404, reason: "not_found", method: "POST", path: "/other" },
  ]);
});

Deno.test("an empty Host header is answered as usual, never a 500", async () => {
  const { app, refusals } = setup();
  const ok = await app.request("/mutate", {
    method: "POST",
    headers: { ...JSON_TYPE, host: "" },
    body: JSON.stringify(podCreateReview(POD)),
  });
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).response.patchType, "JSONPatch");
  const other = await app.request("/other", { headers: { host: "" } });
  assert.equal(other.status, 404);
  const bad = await app.request("/mutate", {
    method: "POST",
    headers: { ...JSON_TYPE, host: "" },
    body: "{",
  });
  assert.equal(bad.status, 400);
  assert.deepEqual(refusals.map((r) => r.reason), ["not_found", "invalid_json"]);
});

Deno.test("a server-side dry run is mutated exactly like the real create", async () => {
  const { app, events } = setup();
  const answer = async (request: Record<string, unknown>) => {
    const response = await app.request("/mutate", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify(podCreateReview(POD, request)),
    });
    assert.equal(response.status, 200);
    return (await response.json()).response;
  };
  const real = await answer({});
  const dry = await answer({ dryRun: true });
  assert.equal(dry.patchType, "JSONPatch");
  assert.deepEqual(dry, real);
  assert.deepEqual(events.map((e) => e.result), ["mutated", "mutated"]);
});

Deno.test("a 250 KB annotation value is never echoed whole: not in the response, not in the event", async () => {
  const big = "v".repeat(250 * 1024);
  const cases: [Record<string, string>, RegExp][] = [
    [
      { "cacerts.spiffe.io/env": big },
      /^annotation cacerts.spiffe.io\/env: "v{64}"…\(256000 bytes\) is not/,
    ],
    [{ "cacerts.spiffe.io/inject": big }, /inject: "v{64}"…\(256000 bytes\) is not "true"/],
    [
      { "cacerts.spiffe.io/os": big },
      /os: unknown OS family "v{64}"…\(256000 bytes\); valid values: /,
    ],
    [
      { "cacerts.spiffe.io/mount-path": big },
      /mount-path: "v{64}"…\(256000 bytes\) is not an absolute/,
    ],
    [
      { "cacerts.spiffe.io/mount-path": `/proc/${big}` },
      /mount-path: "\/proc\/v{58}"…\(256006 bytes\) is under \/proc/,
    ],
    [{ "cacerts.spiffe.io/containers": big }, /named "v{64}"…\(256000 bytes\) \(pod has app\)/],
    [
      { "cacerts.spiffe.io/containers": Array.from({ length: 5000 }, (_, i) => `c${i}`).join() },
      /named "c0", "c1", .*"c9" and 4990 more \(pod has app\)/,
    ],
    [
      { [`cacerts.spiffe.io/${big}`]: "x" },
      /^unknown annotation "cacerts.spiffe.io\/v{46}"…\(256018 bytes\); known:/,
    ],
  ];
  const events: AdmissionEvent[] = [];
  const app = createApp({
    driverName: DRIVER_NAME,
    className: "spire-ca",
    onAdmission: (event) => events.push(event),
  });
  for (const [annotations, match] of cases) {
    const pod = { ...POD, metadata: { ...POD.metadata, annotations } };
    const response = await app.request("/mutate", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify(podCreateReview(pod)),
    });
    const text = await response.text();
    assert.ok(text.length < 2048, `response of ${text.length} characters`);
    const message = JSON.parse(text).response.status.message as string;
    assert.match(message, match);
    const event = events.at(-1)!;
    assert.equal(event.result, "rejected");
    assert.equal(event.message, message);
    assert.ok(JSON.stringify(event).length < 2048);
  }
});

Deno.test("echoed review fields are capped too", async () => {
  const { app } = setup();
  const long = "t".repeat(500);
  const type = await app.request("/mutate", {
    method: "POST",
    headers: { "content-type": `text/${long}` },
    body: "{}",
  });
  assert.match((await type.json()).error, /got "text\/t{59}"…\(505 bytes\)$/);
  const kind = await app.request("/mutate", {
    method: "POST",
    headers: JSON_TYPE,
    body: JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: { k: long } }),
  });
  assert.match(
    (await kind.json()).error,
    /^kind must be AdmissionReview, got \{"k":"t{58}…\(508 bytes\)$/,
  );
});
