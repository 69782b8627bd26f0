import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { createApp } from "../webhook/app.ts";
import { escapePointerToken, type JsonPatchOperation, planMutation } from "../webhook/mutate.ts";
import { podCreateReview } from "../webhook/testdata/admission_review.ts";
import { applyJsonPatch } from "../webhook/testdata/json_patch.ts";

const config = { driverName: DRIVER_NAME, className: "spire-ca" };
const LABEL = { [INJECT_LABEL]: "true" };

// deno-lint-ignore no-explicit-any
type Json = any;

function pod(overrides: Json = {}): Json {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", namespace: "ns", labels: { ...LABEL }, ...(overrides.metadata ?? {}) },
    spec: overrides.spec ?? { containers: [{ name: "app", image: "x" }] },
  };
}

function review(object: Json, request: Json = {}): Json {
  return podCreateReview(object, { namespace: "ns", ...request });
}

async function post(
  body: string | Uint8Array<ArrayBuffer>,
  type = "application/json",
  app = createApp(config),
) {
  const response = await app.request("/mutate", {
    method: "POST",
    headers: { "content-type": type },
    body,
  });
  return { status: response.status, body: await response.json() as Json };
}

function decodePatch(response: Json): JsonPatchOperation[] {
  return JSON.parse(atob(response.patch));
}

Deno.test("labelled pod gets the volume and a read-only mount in every container", async () => {
  const object = pod({
    spec: {
      initContainers: [{ name: "init", image: "x" }],
      containers: [{ name: "a", image: "x", volumeMounts: [{ name: "d", mountPath: "/data" }] }, {
        name: "b",
        image: "x",
      }],
      volumes: [{ name: "d", emptyDir: {} }],
    },
  });
  const { status, body } = await post(JSON.stringify(review(object)));
  assert.equal(status, 200);
  assert.equal(body.response.uid, "u-1");
  assert.equal(body.response.allowed, true);
  assert.equal(body.response.patchType, "JSONPatch");
  const patched = applyJsonPatch(object, decodePatch(body.response));
  assert.deepEqual(patched.spec.volumes[1], {
    name: "spire-cacerts",
    csi: {
      driver: "cacerts.csi.cert-manager.io",
      readOnly: true,
      volumeAttributes: { os: "debian", caProviderClasses: "spire-ca" },
    },
  });
  const mount = { name: "spire-cacerts", mountPath: "/etc/ssl/certs", readOnly: true };
  assert.deepEqual(patched.spec.initContainers[0].volumeMounts, [mount]);
  assert.deepEqual(patched.spec.containers[0].volumeMounts, [
    { name: "d", mountPath: "/data" },
    mount,
  ]);
  assert.deepEqual(patched.spec.containers[1].volumeMounts, [mount]);
  // A second run over the mutated pod (a reinvocation) changes nothing and skips nothing.
  assert.deepEqual(planMutation(patched, config), { patch: [], warnings: [] });
});

Deno.test("os, containers, mount-path and env annotations", () => {
  const object = pod({
    metadata: {
      annotations: {
        "cacerts.spiffe.io/os": "rhel",
        "cacerts.spiffe.io/containers": "java, side",
        "cacerts.spiffe.io/env": "true",
      },
    },
    spec: {
      containers: [
        { name: "java", image: "x", env: [{ name: "JAVA_TOOL_OPTIONS", value: "-Xmx1g" }] },
        { name: "side", image: "x", env: [{ name: "SSL_CERT_FILE", value: "/mine.pem" }] },
        { name: "other", image: "x" },
      ],
    },
  });
  const plan = planMutation(object, config);
  const patched = applyJsonPatch(object, plan.patch);
  assert.equal(patched.spec.volumes[0].csi.volumeAttributes.os, "rhel");
  const path = "/etc/pki/ca-trust/extracted";
  assert.equal(patched.spec.containers[0].volumeMounts[0].mountPath, path);
  assert.equal(patched.spec.containers[2].volumeMounts, undefined);
  const env = (i: number) =>
    Object.fromEntries(patched.spec.containers[i].env.map((e: Json) => [e.name, e.value]));
  assert.equal(
    env(0).JAVA_TOOL_OPTIONS,
    `-Xmx1g -Djavax.net.ssl.trustStore=${path}/java/cacerts -Djavax.net.ssl.trustStorePassword=changeit`,
  );
  assert.equal(env(0).SSL_CERT_FILE, `${path}/pem/tls-ca-bundle.pem`);
  assert.equal(env(0).NODE_EXTRA_CA_CERTS, `${path}/pem/tls-ca-bundle.pem`);
  assert.equal(env(0).REQUESTS_CA_BUNDLE, `${path}/pem/tls-ca-bundle.pem`);
  assert.equal(env(1).SSL_CERT_FILE, "/mine.pem");
  assert.deepEqual(plan.warnings, ["container side: SSL_CERT_FILE is already set; left as is"]);

  const custom = pod({ metadata: { annotations: { "cacerts.spiffe.io/mount-path": "/x/y" } } });
  const p2 = applyJsonPatch(custom, planMutation(custom, config).patch);
  assert.equal(p2.spec.containers[0].volumeMounts[0].mountPath, "/x/y");
  assert.equal(p2.spec.volumes[0].csi.volumeAttributes.os, "debian");
});

Deno.test("pods left alone: opt-out, unlabelled, existing mount at the path", () => {
  const optOut = pod({ metadata: { annotations: { "cacerts.spiffe.io/inject": "false" } } });
  assert.deepEqual(planMutation(optOut, config), { patch: [], warnings: [] });
  const unlabelled = pod({ metadata: { labels: { app: "x" } } });
  assert.deepEqual(planMutation(unlabelled, config), { patch: [], warnings: [] });
  const falseLabel = pod({ metadata: { labels: { [INJECT_LABEL]: "yes" } } });
  assert.deepEqual(planMutation(falseLabel, config).patch, []);
  const clash = pod({
    spec: {
      containers: [{
        name: "a",
        image: "x",
        volumeMounts: [{ name: "c", mountPath: "/etc/ssl/certs/" }],
      }],
      volumes: [{ name: "c", emptyDir: {} }],
    },
  });
  const plan = planMutation(clash, config);
  assert.deepEqual(plan.patch, []);
  assert.match(plan.warnings[0], /container a already mounts volume c at \/etc\/ssl\/certs/);
});

Deno.test("null lists are replaced, not appended to", () => {
  const object = pod({
    spec: { volumes: null, containers: [{ name: "a", image: "x", volumeMounts: null, env: null }] },
  });
  object.metadata.annotations = { "cacerts.spiffe.io/env": "true" };
  const patched = applyJsonPatch(object, planMutation(object, config).patch);
  assert.equal(patched.spec.volumes.length, 1);
  assert.equal(patched.spec.containers[0].volumeMounts.length, 1);
  assert.equal(patched.spec.containers[0].env.length, 5);
});

Deno.test("pointer tokens escape ~ and /", () => {
  assert.equal(escapePointerToken("a/b~c"), "a~1b~0c");
});

Deno.test("skipped reviews are allowed without a patch", async () => {
  const cases: [string, Json][] = [
    ["unlabelled pod", review(pod({ metadata: { labels: {} } }))],
    ["update", review(pod(), { operation: "UPDATE" })],
    [
      "other kind",
      review({ kind: "Secret" }, { kind: { group: "", version: "v1", kind: "Secret" } }),
    ],
  ];
  for (const [name, body] of cases) {
    const res = await post(JSON.stringify(body));
    assert.equal(res.status, 200, name);
    assert.deepEqual(res.body.response, { uid: "u-1", allowed: true }, name);
  }
});

Deno.test("bad requests: status and message", async (t) => {
  const small = createApp({ ...config, maxBodyBytes: 1024 });
  const throwing = (policy: "Fail" | "Ignore") =>
    createApp({
      ...config,
      failurePolicy: policy,
      plan: () => {
        throw new TypeError("boom");
      },
    });
  const ok = JSON.stringify(review(pod()));
  const table: {
    name: string;
    body: string | Uint8Array<ArrayBuffer>;
    type?: string;
    app?: ReturnType<typeof createApp>;
    status: number;
    match: RegExp;
    allowed?: boolean;
  }[] = [
    {
      name: "wrong content type",
      body: ok,
      type: "text/plain",
      status: 415,
      match: /content type must be application\/json, got "text\/plain"/,
    },
    { name: "not JSON", body: "{", status: 400, match: /body is not JSON/ },
    { name: "empty body", body: "", status: 400, match: /empty body/ },
    {
      name: "invalid UTF-8",
      body: new Uint8Array([0xff, 0xfe]),
      status: 400,
      match: /not valid UTF-8/,
    },
    { name: "array body", body: "[]", status: 400, match: /not a JSON object/ },
    {
      name: "wrong apiVersion",
      body: JSON.stringify({ ...review(pod()), apiVersion: "admission.k8s.io/v1beta1" }),
      status: 400,
      match: /apiVersion must be admission.k8s.io\/v1, got "admission.k8s.io\/v1beta1"/,
    },
    {
      name: "wrong kind",
      body: JSON.stringify({ ...review(pod()), kind: "Pod" }),
      status: 400,
      match: /kind must be AdmissionReview, got "Pod"/,
    },
    {
      name: "no request",
      body: JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" }),
      status: 400,
      match: /has no request/,
    },
    {
      name: "no uid",
      body: JSON.stringify(review(pod(), { uid: "" })),
      status: 400,
      match: /has no uid/,
    },
    {
      name: "oversized",
      body: "x".repeat(2048),
      app: small,
      status: 413,
      match: /exceeds 1024 bytes/,
    },
    {
      name: "unknown annotation key",
      body: JSON.stringify(
        review(pod({ metadata: { annotations: { "cacerts.spiffe.io/injekt": "false" } } })),
      ),
      status: 200,
      allowed: false,
      match: /unknown annotation "cacerts.spiffe.io\/injekt"; known: cacerts.spiffe.io\/inject/,
    },
    {
      name: "bad inject value",
      body: JSON.stringify(
        review(pod({ metadata: { annotations: { "cacerts.spiffe.io/inject": "no" } } })),
      ),
      status: 200,
      allowed: false,
      match: /cacerts.spiffe.io\/inject: "no" is not "true" or "false"/,
    },
    {
      name: "unknown os",
      body: JSON.stringify(
        review(pod({ metadata: { annotations: { "cacerts.spiffe.io/os": "windows" } } })),
      ),
      status: 200,
      allowed: false,
      match: /cacerts.spiffe.io\/os: unknown OS family "windows"; valid values: debian/,
    },
    {
      name: "unknown container",
      body: JSON.stringify(
        review(pod({ metadata: { annotations: { "cacerts.spiffe.io/containers": "app,ghost" } } })),
      ),
      status: 200,
      allowed: false,
      match: /no container or init container named "ghost" \(pod has app\)/,
    },
    {
      name: "relative mount path",
      body: JSON.stringify(
        review(pod({ metadata: { annotations: { "cacerts.spiffe.io/mount-path": "etc/x" } } })),
      ),
      status: 200,
      allowed: false,
      match: /mount-path: "etc\/x" is not an absolute path/,
    },
    {
      name: "dot-dot mount path into a system directory",
      body: JSON.stringify(
        review(
          pod({ metadata: { annotations: { "cacerts.spiffe.io/mount-path": "/etc/ssl/.." } } }),
        ),
      ),
      status: 200,
      allowed: false,
      match: /mount-path: "\/etc\/ssl\/\.\." \(\/etc\) is a system directory the store would hide/,
    },
    {
      name: "bad env value",
      body: JSON.stringify(
        review(pod({ metadata: { annotations: { "cacerts.spiffe.io/env": "1" } } })),
      ),
      status: 200,
      allowed: false,
      match: /cacerts.spiffe.io\/env: "1" is not "true" or "false"/,
    },
    {
      name: "thrown error, failurePolicy Fail",
      body: ok,
      app: throwing("Fail"),
      status: 200,
      allowed: false,
      match: /spire-cacerts webhook failed: boom/,
    },
    {
      name: "thrown error, failurePolicy Ignore",
      body: ok,
      app: throwing("Ignore"),
      status: 200,
      allowed: true,
      match: /boom; pod admitted unchanged/,
    },
  ];
  const rows: string[] = [];
  for (const row of table) {
    await t.step(row.name, async () => {
      const res = await post(row.body, row.type, row.app);
      assert.equal(res.status, row.status);
      let message: string;
      if (row.status === 200) {
        assert.equal(res.body.response.uid, "u-1");
        assert.equal(res.body.response.allowed, row.allowed);
        message = res.body.response.status?.message ?? res.body.response.warnings?.join("; ");
        if (row.allowed === false) {
          assert.equal(res.body.response.status.code, /failed/.test(message) ? 500 : 400);
        }
      } else {
        message = res.body.error;
      }
      assert.match(message, row.match);
      rows.push(
        `${row.name} -> ${res.status}${
          row.status === 200 ? ` allowed=${row.allowed}` : ""
        }: ${message}`,
      );
    });
  }
  console.log(rows.join("\n"));
});

Deno.test("other routes and methods are not the admission endpoint", async () => {
  const app = createApp(config);
  assert.equal((await app.request("/mutate", { method: "GET" })).status, 404);
  assert.equal((await app.request("/other", { method: "POST" })).status, 404);
});

Deno.test("onAdmission reports each result", async () => {
  const events: string[] = [];
  const app = createApp({ ...config, onAdmission: (e) => events.push(e.result) });
  await post(JSON.stringify(review(pod())), undefined, app);
  await post(JSON.stringify(review(pod({ metadata: { labels: {} } }))), undefined, app);
  await post("{", undefined, app);
  assert.deepEqual(events, ["mutated", "skipped", "bad_request"]);
});
