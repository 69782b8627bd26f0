import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
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

// ---- the budget of body bytes in flight and the body timeout, with real streams ----

/** A body stream the test feeds by hand: `send` enqueues, `end` closes, `fail` errors it. */
function controlledBody() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  const encoder = new TextEncoder();
  return {
    stream,
    send: (text: string) => controller.enqueue(encoder.encode(text)),
    end: () => controller.close(),
    fail: (error: Error) => controller.error(error),
  };
}

/** A review padded with spaces to exactly `size` bytes. */
function reviewOf(size: number): string {
  const text = JSON.stringify(podCreateReview(POD));
  assert.ok(text.length <= size, `the review is ${text.length} bytes`);
  return text + " ".repeat(size - text.length);
}

function budgetApp(maxInFlightBytes: number, bodyTimeoutMs = 60_000) {
  const refusals: RefusalEvent[] = [];
  const app = createApp({
    driverName: DRIVER_NAME,
    className: "spire-ca",
    maxBodyBytes: LIMIT,
    maxInFlightBytes,
    bodyTimeoutMs,
    onRefused: (event) => refusals.push(event),
  });
  const post = (body: BodyInit, declared?: number) =>
    app.request("/mutate", {
      method: "POST",
      headers: declared === undefined
        ? JSON_TYPE
        : { ...JSON_TYPE, "content-length": String(declared) },
      body,
    });
  return { app, refusals, post };
}

Deno.test("a declared length that does not fit the budget is 429 with Retry-After before it is read; the room comes back when the first is answered", async () => {
  const { refusals, post } = budgetApp(1500);
  const body = reviewOf(1000);
  const first = controlledBody();
  const pending = post(first.stream, 1000);
  first.send(body.slice(0, 500));
  let pulled = false;
  const second = new ReadableStream<Uint8Array>({
    pull() {
      pulled = true;
    },
  }, { highWaterMark: 0 });
  const busy = await post(second, 1000);
  assert.equal(busy.status, 429);
  assert.equal(busy.headers.get("retry-after"), "1");
  assert.equal(
    busy.headers.get("connection"),
    null,
    "the adapter discards the body, keeps the connection",
  );
  assert.match((await busy.json()).error, /^server busy: 1000 of 1500 request-body bytes/);
  assert.equal(pulled, false, "the refused body is not read");
  assert.deepEqual(refusals.map((r) => [r.status, r.reason]), [[429, "busy"]]);
  first.send(body.slice(500));
  first.end();
  const answered = await pending;
  assert.equal(answered.status, 200);
  assert.equal((await answered.json()).response.patchType, "JSONPatch");
  const again = await post(body, 1000);
  assert.equal(again.status, 200, "the first request's bytes were released");
  await again.body?.cancel();
});

Deno.test("a chunked body reserves its bytes as they stream and is 429 once they no longer fit", async () => {
  const { refusals, post } = budgetApp(1500);
  const body = reviewOf(1000);
  const first = controlledBody();
  const pending = post(first.stream);
  first.send(body.slice(0, 800));
  const second = controlledBody();
  const refused = post(second.stream);
  second.send(body.slice(0, 400));
  second.send(body.slice(400, 800));
  const busy = await refused;
  assert.equal(busy.status, 429);
  assert.match(
    (await busy.json()).error,
    /1200 of 1500 request-body bytes in flight; no room for 400/,
  );
  first.send(body.slice(800));
  first.end();
  assert.equal((await pending).status, 200);
  // Both reservations are back: a body needing 1000 of the 1500 passes.
  const again = controlledBody();
  const third = post(again.stream);
  again.send(body);
  again.end();
  assert.equal((await third).status, 200);
  assert.deepEqual(refusals.map((r) => r.reason), ["busy"]);
});

Deno.test("a body not received within the body timeout is 408 and closes the connection; its bytes come back at once", async () => {
  const { refusals, post } = budgetApp(1000, 50);
  const body = reviewOf(1000);
  const stalled = controlledBody();
  const pending = post(stalled.stream, 1000);
  stalled.send(body.slice(0, 100));
  const timedOut = await pending;
  assert.equal(timedOut.status, 408);
  assert.equal(timedOut.headers.get("connection"), "close");
  assert.equal((await timedOut.json()).error, "body not received within 50 ms");
  // The stalled stream never ends (as a socket the adapter does not report closed): its 1000
  // bytes are back anyway, so a review needing all of the budget passes.
  const after = await post(body, 1000);
  assert.equal(after.status, 200);
  await after.body?.cancel();
  // A chunked body that stalls is cut off the same way, and its bytes are released at once.
  const chunked = controlledBody();
  const cut = post(chunked.stream);
  chunked.send(body.slice(0, 100));
  const cutOff = await cut;
  assert.equal(cutOff.status, 408);
  assert.equal((await cutOff.json()).error, "body not received within 50 ms (100 bytes by then)");
  const last = await post(body, 1000);
  assert.equal(last.status, 200);
  await last.body?.cancel();
  assert.deepEqual(refusals.map((r) => [r.status, r.reason]), [
    [408, "body_timeout"],
    [408, "body_timeout"],
  ]);
});

Deno.test("a body stream that breaks is 400 body_aborted and gives its bytes back", async () => {
  const { refusals, post } = budgetApp(1000);
  const body = reviewOf(1000);
  for (const declared of [1000, undefined]) {
    const broken = controlledBody();
    const pending = post(broken.stream, declared);
    broken.send(body.slice(0, 300));
    broken.fail(new Error("peer reset"));
    const response = await pending;
    assert.equal(response.status, 400);
    assert.equal((await response.json()).error, "request body aborted: peer reset");
    const next = await post(body, 1000);
    assert.equal(next.status, 200, `declared ${declared}: the bytes were released`);
    await next.body?.cancel();
  }
  assert.deepEqual(refusals.map((r) => r.reason), ["body_aborted", "body_aborted"]);
});

Deno.test("over a real socket, a stalled upload is answered 408 and its connection closed", async () => {
  const { app, refusals } = budgetApp(4096, 100);
  const server = createServer(getRequestListener(app.fetch, { overrideGlobalObjects: false }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const body = reviewOf(1000);
    await conn.write(new TextEncoder().encode(
      `POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
        `content-length: 1000\r\n\r\n${body.slice(0, 200)}`,
    ));
    // Read until the server closes the connection: the 408 and then EOF.
    let text = "";
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    conn.close();
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.match(text, /"body not received within 100 ms"/);
    assert.deepEqual(refusals.map((r) => r.reason), ["body_timeout"]);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

Deno.test("a refused body over 64 KiB is not discarded: its 429 closes the connection", async () => {
  const refusals: RefusalEvent[] = [];
  const app = createApp({
    driverName: DRIVER_NAME,
    className: "spire-ca",
    maxBodyBytes: 1024 * 1024,
    maxInFlightBytes: 128 * 1024,
    onRefused: (event) => refusals.push(event),
  });
  const post = (declared: number) =>
    app.request("/mutate", {
      method: "POST",
      headers: { ...JSON_TYPE, "content-length": String(declared) },
      body: new ReadableStream({}, { highWaterMark: 0 }),
    });
  const large = await post(200 * 1024);
  assert.equal(large.status, 429);
  assert.equal(large.headers.get("connection"), "close");
  assert.equal(large.headers.get("retry-after"), "1");
  await large.body?.cancel();
  // A refused body of exactly 64 KiB is discarded and its connection kept (100 KiB of the
  // 128 KiB budget are held meanwhile, so 64 KiB do not fit).
  const held = controlledBody();
  const pending = app.request("/mutate", {
    method: "POST",
    headers: { ...JSON_TYPE, "content-length": String(100 * 1024) },
    body: held.stream,
  });
  const small = await post(64 * 1024);
  assert.equal(small.status, 429);
  assert.equal(small.headers.get("connection"), null);
  await small.body?.cancel();
  held.fail(new Error("done"));
  await (await pending).body?.cancel();
  assert.deepEqual(refusals.map((r) => r.reason), ["busy", "busy", "body_aborted"]);
});
