import assert from "node:assert/strict";
import jsonpatch from "fast-json-patch";
import type { V1Pod } from "@kubernetes/client-node";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { createApp } from "./app.ts";
import {
  InvalidAnnotationError,
  type JsonPatchOperation,
  normaliseMountPath,
  planMutation,
} from "./mutate.ts";
import { podCreateReview } from "./testdata/admission_review.ts";

const config = { driverName: DRIVER_NAME, className: "spire-ca" };
const LABEL = { [INJECT_LABEL]: "true" };
const DEBIAN = "/etc/ssl/certs";
const RHEL = "/etc/pki/ca-trust/extracted";
const TRUST = (path: string) =>
  `-Djavax.net.ssl.trustStore=${path}/java/cacerts -Djavax.net.ssl.trustStorePassword=changeit`;

// deno-lint-ignore no-explicit-any
type Json = any;

function pod(spec: Json, annotations?: Record<string, string>): Json {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", namespace: "ns", labels: { ...LABEL }, annotations },
    spec,
  };
}

function volume(os = "debian"): Json {
  return {
    name: "spire-cacerts",
    csi: {
      driver: DRIVER_NAME,
      readOnly: true,
      volumeAttributes: { os, caProviderClasses: "spire-ca" },
    },
  };
}

const mount = (mountPath = DEBIAN) => ({ name: "spire-cacerts", mountPath, readOnly: true });

function envVars(path = DEBIAN, bundle = "ca-certificates.crt", hashDir = ""): Json[] {
  return [
    { name: "SSL_CERT_FILE", value: `${path}/${bundle}` },
    { name: "SSL_CERT_DIR", value: hashDir === "" ? path : `${path}/${hashDir}` },
    { name: "NODE_EXTRA_CA_CERTS", value: `${path}/${bundle}` },
    { name: "REQUESTS_CA_BUNDLE", value: `${path}/${bundle}` },
    { name: "JAVA_TOOL_OPTIONS", value: TRUST(path) },
  ];
}
const withoutJava = (path = DEBIAN) => envVars(path).filter((e) => e.name !== "JAVA_TOOL_OPTIONS");
const ENV = { "cacerts.spiffe.io/env": "true" };

/** Every pod the mutation tests plan for, with the pod the patch must produce. */
const CASES: { name: string; pod: Json; expected: Json; warnings?: string[] }[] = [
  {
    name: "the app test's pod: no volumes, one container",
    pod: pod({ containers: [{ name: "app", image: "x" }] }),
    expected: pod({
      containers: [{ name: "app", image: "x", volumeMounts: [mount()] }],
      volumes: [volume()],
    }),
  },
  {
    name: "init container, existing volume and mounts, a container without mounts",
    pod: pod({
      initContainers: [{ name: "init", image: "x" }],
      containers: [
        { name: "a", image: "x", volumeMounts: [{ name: "d", mountPath: "/data" }] },
        { name: "b", image: "x" },
      ],
      volumes: [{ name: "d", emptyDir: {} }],
    }),
    expected: pod({
      initContainers: [{ name: "init", image: "x", volumeMounts: [mount()] }],
      containers: [
        { name: "a", image: "x", volumeMounts: [{ name: "d", mountPath: "/data" }, mount()] },
        { name: "b", image: "x", volumeMounts: [mount()] },
      ],
      volumes: [{ name: "d", emptyDir: {} }, volume()],
    }),
  },
  {
    name: "os, containers and env annotations; JAVA_TOOL_OPTIONS with a value, SSL_CERT_FILE set",
    pod: pod({
      containers: [
        { name: "java", image: "x", env: [{ name: "JAVA_TOOL_OPTIONS", value: "-Xmx1g" }] },
        { name: "side", image: "x", env: [{ name: "SSL_CERT_FILE", value: "/mine.pem" }] },
        { name: "other", image: "x" },
      ],
    }, {
      "cacerts.spiffe.io/os": "rhel",
      "cacerts.spiffe.io/containers": "java, side",
      "cacerts.spiffe.io/env": "true",
    }),
    expected: pod({
      containers: [
        {
          name: "java",
          image: "x",
          env: [
            { name: "JAVA_TOOL_OPTIONS", value: `-Xmx1g ${TRUST(RHEL)}` },
            ...envVars(RHEL, "pem/tls-ca-bundle.pem", "pem/directory-hash").slice(0, 4),
          ],
          volumeMounts: [mount(RHEL)],
        },
        {
          name: "side",
          image: "x",
          env: [
            { name: "SSL_CERT_FILE", value: "/mine.pem" },
            ...envVars(RHEL, "pem/tls-ca-bundle.pem", "pem/directory-hash").slice(1),
          ],
          volumeMounts: [mount(RHEL)],
        },
        { name: "other", image: "x" },
      ],
      volumes: [volume("rhel")],
    }, {
      "cacerts.spiffe.io/os": "rhel",
      "cacerts.spiffe.io/containers": "java, side",
      "cacerts.spiffe.io/env": "true",
    }),
    warnings: ["container side: SSL_CERT_FILE is already set; left as is"],
  },
  {
    name: "mount-path annotation",
    pod: pod({ containers: [{ name: "app", image: "x" }] }, {
      "cacerts.spiffe.io/mount-path": "/x/y",
    }),
    expected: pod({
      containers: [{ name: "app", image: "x", volumeMounts: [mount("/x/y")] }],
      volumes: [volume()],
    }, { "cacerts.spiffe.io/mount-path": "/x/y" }),
  },
  {
    name: "null lists are set, not appended to",
    pod: pod({ volumes: null, containers: [{ name: "a", volumeMounts: null, env: null }] }, ENV),
    expected: pod({
      volumes: [volume()],
      containers: [{ name: "a", volumeMounts: [mount()], env: envVars() }],
    }, ENV),
  },
  {
    name: "an empty env list is set",
    pod: pod({ containers: [{ name: "a", env: [] }] }, ENV),
    expected: pod({
      containers: [{ name: "a", env: envVars(), volumeMounts: [mount()] }],
      volumes: [volume()],
    }, ENV),
  },
  {
    name: "JAVA_TOOL_OPTIONS with an empty value",
    pod: pod({ containers: [{ name: "a", env: [{ name: "JAVA_TOOL_OPTIONS", value: "" }] }] }, ENV),
    expected: pod({
      containers: [{
        name: "a",
        env: [{ name: "JAVA_TOOL_OPTIONS", value: TRUST(DEBIAN) }, ...withoutJava()],
        volumeMounts: [mount()],
      }],
      volumes: [volume()],
    }, ENV),
  },
  {
    name: "JAVA_TOOL_OPTIONS without a value member (how the API server sends an empty one)",
    pod: pod({
      containers: [{ name: "a", env: [{ name: "X", value: "1" }, { name: "JAVA_TOOL_OPTIONS" }] }],
    }, ENV),
    expected: pod({
      containers: [{
        name: "a",
        env: [
          { name: "X", value: "1" },
          { name: "JAVA_TOOL_OPTIONS", value: TRUST(DEBIAN) },
          ...withoutJava(),
        ],
        volumeMounts: [mount()],
      }],
      volumes: [volume()],
    }, ENV),
  },
  {
    name: "JAVA_TOOL_OPTIONS from valueFrom is left as is",
    pod: pod({
      containers: [{
        name: "a",
        env: [{
          name: "JAVA_TOOL_OPTIONS",
          valueFrom: { configMapKeyRef: { name: "java", key: "opts" } },
        }],
      }],
    }, ENV),
    expected: pod({
      containers: [{
        name: "a",
        env: [
          {
            name: "JAVA_TOOL_OPTIONS",
            valueFrom: { configMapKeyRef: { name: "java", key: "opts" } },
          },
          ...withoutJava(),
        ],
        volumeMounts: [mount()],
      }],
      volumes: [volume()],
    }, ENV),
    warnings: ["container a: JAVA_TOOL_OPTIONS is already set; left as is"],
  },
  {
    name: "JAVA_TOOL_OPTIONS that already names a trust store is left as is",
    pod: pod({
      containers: [{
        name: "a",
        env: [{ name: "JAVA_TOOL_OPTIONS", value: "-Djavax.net.ssl.trustStore=/mine" }],
      }],
    }, ENV),
    expected: pod({
      containers: [{
        name: "a",
        env: [
          { name: "JAVA_TOOL_OPTIONS", value: "-Djavax.net.ssl.trustStore=/mine" },
          ...withoutJava(),
        ],
        volumeMounts: [mount()],
      }],
      volumes: [volume()],
    }, ENV),
    warnings: ["container a: JAVA_TOOL_OPTIONS already sets a trust store; left as is"],
  },
];

/** Applies `patch` as a strict RFC 6902 applier does: every operation validated first. */
function applyStrict(document: Json, patch: JsonPatchOperation[]): Json {
  return jsonpatch.applyPatch(structuredClone(document), patch, true, true).newDocument;
}

Deno.test("every planned patch is valid RFC 6902 and produces the expected pod", async (t) => {
  for (const c of CASES) {
    await t.step(c.name, () => {
      const plan = planMutation(c.pod as V1Pod, config);
      assert.ok(plan.patch.length > 0);
      assert.ok(plan.patch.every((op) => op.op === "add"), "only add operations");
      assert.deepEqual(applyStrict(c.pod, plan.patch), c.expected);
      assert.deepEqual(plan.warnings, c.warnings ?? []);
    });
  }
});

Deno.test("the patch the app answers applies strictly too", async () => {
  const app = createApp(config);
  for (const c of CASES) {
    const response = await app.request("/mutate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(podCreateReview(c.pod)),
    });
    const body = await response.json();
    assert.equal(body.response.patchType, "JSONPatch", c.name);
    assert.deepEqual(applyStrict(c.pod, JSON.parse(atob(body.response.patch))), c.expected, c.name);
  }
});

Deno.test("a replace of a missing value member is what a strict applier refuses", () => {
  const document = pod({ containers: [{ name: "a", env: [{ name: "JAVA_TOOL_OPTIONS" }] }] });
  assert.throws(
    () =>
      applyStrict(document, [{
        op: "replace",
        path: "/spec/containers/0/env/0/value",
        value: "x",
      }]),
    jsonpatch.JsonPatchError,
  );
});

Deno.test("reinvocation: a container added after the first pass gets the mount and env, only it", () => {
  const first = pod({
    initContainers: [{ name: "init", image: "x" }],
    containers: [{ name: "app", image: "x", env: [{ name: "JAVA_TOOL_OPTIONS" }] }],
  }, ENV);
  const mutated = applyStrict(first, planMutation(first, config).patch);
  // Another webhook adds a sidecar (with env of its own) and an init container.
  const changed = structuredClone(mutated);
  changed.spec.containers.push({ name: "sidecar", image: "y", env: [{ name: "A", value: "1" }] });
  changed.spec.initContainers.unshift({ name: "early", image: "y" });
  const plan = planMutation(changed, config);
  assert.deepEqual(plan.warnings, []);
  assert.deepEqual(plan.patch.map((op) => op.path), [
    "/spec/initContainers/0/volumeMounts",
    "/spec/initContainers/0/env",
    "/spec/containers/1/volumeMounts",
    "/spec/containers/1/env/-",
    "/spec/containers/1/env/-",
    "/spec/containers/1/env/-",
    "/spec/containers/1/env/-",
    "/spec/containers/1/env/-",
  ]);
  const patched = applyStrict(changed, plan.patch);
  const expected = structuredClone(changed);
  expected.spec.initContainers[0].volumeMounts = [mount()];
  expected.spec.initContainers[0].env = envVars();
  expected.spec.containers[1].volumeMounts = [mount()];
  expected.spec.containers[1].env = [{ name: "A", value: "1" }, ...envVars()];
  assert.deepEqual(patched, expected);
  assert.equal(patched.spec.volumes.length, 1, "the volume is not added twice");
  // Once every container has it, a further reinvocation is a no-op without warnings.
  assert.deepEqual(planMutation(patched, config), { patch: [], warnings: [] });
});

Deno.test("reinvocation: a new container with its own mount at the path is skipped with a warning", () => {
  const first = pod({ containers: [{ name: "app", image: "x" }] });
  const mutated = applyStrict(first, planMutation(first, config).patch);
  mutated.spec.containers.push(
    { name: "own", image: "y", volumeMounts: [{ name: "certs", mountPath: "/etc/ssl/certs/" }] },
    { name: "plain", image: "y" },
  );
  mutated.spec.volumes.push({ name: "certs", emptyDir: {} });
  const plan = planMutation(mutated, config);
  assert.deepEqual(plan.warnings, [
    "container own already mounts volume certs at /etc/ssl/certs; trust store not mounted in it",
  ]);
  const patched = applyStrict(mutated, plan.patch);
  assert.deepEqual(patched.spec.containers[1].volumeMounts, [
    { name: "certs", mountPath: "/etc/ssl/certs/" },
  ]);
  assert.deepEqual(patched.spec.containers[2].volumeMounts, [mount()]);
  assert.deepEqual(patched.spec.containers[0].volumeMounts, [mount()]);
});

Deno.test("a volume named spire-cacerts of another driver, or the driver's under another name, is left alone", () => {
  const other = pod({
    containers: [{ name: "app", image: "x" }],
    volumes: [{ name: "spire-cacerts", emptyDir: {} }],
  });
  const a = planMutation(other, config);
  assert.deepEqual(a.patch, []);
  assert.match(a.warnings[0], /pod already has volume spire-cacerts \(CSI driver none\)/);
  const renamed = pod({
    containers: [{ name: "app", image: "x" }],
    volumes: [{ name: "mine", csi: { driver: DRIVER_NAME } }],
  });
  const b = planMutation(renamed, config);
  assert.deepEqual(b.patch, []);
  assert.match(b.warnings[0], /pod already has volume mine \(CSI driver cacerts.csi/);
});

Deno.test("mount-path is normalised before it is used and compared", () => {
  for (
    const [value, path] of [
      ["//etc/ssl/certs", DEBIAN],
      ["/etc/ssl/certs/", DEBIAN],
      ["/etc/./ssl//certs/.", DEBIAN],
      ["/etc/pki/../ssl/certs", DEBIAN],
      ["/../etc/ssl/certs", DEBIAN],
      ["/run/secrets/x", "/run/secrets/x"],
      ["/etc/pki/ca-trust/extracted/", RHEL],
      ["/var/run/ca", "/var/run/ca"],
      ["/etc/x", "/etc/x"],
    ]
  ) {
    const object = pod({ containers: [{ name: "a" }] }, { "cacerts.spiffe.io/mount-path": value });
    const patched = applyStrict(object, planMutation(object, config).patch);
    assert.deepEqual(patched.spec.containers[0].volumeMounts, [mount(path)], value);
  }
  // An existing mount at an unnormalised spelling of the path is a clash.
  const clash = pod({
    containers: [{ name: "a", volumeMounts: [{ name: "c", mountPath: "//etc/ssl//certs/" }] }],
    volumes: [{ name: "c", emptyDir: {} }],
  }, { "cacerts.spiffe.io/mount-path": "/etc/ssl/certs/." });
  const plan = planMutation(clash, config);
  assert.deepEqual(plan.patch, []);
  assert.match(plan.warnings[0], /container a already mounts volume c at \/etc\/ssl\/certs;/);
});

Deno.test("mount-path: relative paths and system directories are refused with the reason", () => {
  const refused = (value: string) => {
    const object = pod({ containers: [{ name: "a" }] }, { "cacerts.spiffe.io/mount-path": value });
    try {
      planMutation(object, config);
    } catch (error) {
      assert.ok(error instanceof InvalidAnnotationError, value);
      return error.message;
    }
    throw new Error(`${value} was accepted`);
  };
  const list = "refused: /, /etc, /run, /var/run and anything under /proc, /sys, /dev";
  const prefix = "annotation cacerts.spiffe.io/mount-path: ";
  assert.equal(refused("etc/ssl/certs"), `${prefix}"etc/ssl/certs" is not an absolute path`);
  assert.equal(refused("./certs"), `${prefix}"./certs" is not an absolute path`);
  assert.equal(refused(""), `${prefix}"" is not an absolute path`);
  assert.equal(refused("/"), `${prefix}"/" is a system directory the store would hide; ${list}`);
  assert.equal(
    refused("//"),
    `${prefix}"//" (/) is a system directory the store would hide; ${list}`,
  );
  for (const path of ["/etc", "/run", "/var/run"]) {
    assert.equal(
      refused(path),
      `${prefix}"${path}" is a system directory the store would hide; ${list}`,
    );
  }
  assert.equal(
    refused("/etc/"),
    `${prefix}"/etc/" (/etc) is a system directory the store would hide; ${list}`,
  );
  assert.equal(
    refused("/etc/ssl/certs/../.."),
    `${prefix}"/etc/ssl/certs/../.." (/etc) is a system directory the store would hide; ${list}`,
  );
  assert.equal(
    refused("/proc"),
    `${prefix}"/proc" is /proc, a kernel filesystem the container runtime mounts; ${list}`,
  );
  assert.equal(
    refused("/sys/fs/x/"),
    `${prefix}"/sys/fs/x/" (/sys/fs/x) is under /sys, a kernel filesystem the container runtime mounts; ${list}`,
  );
  assert.match(refused("/dev/shm"), /"\/dev\/shm" is under \/dev, a kernel filesystem/);
  assert.match(refused("/x/../proc/1"), /\(\/proc\/1\) is under \/proc/);
  assert.match(refused("/a:b"), /contains ':'/);
});

Deno.test("normaliseMountPath", () => {
  assert.equal(normaliseMountPath("/"), "/");
  assert.equal(normaliseMountPath("///"), "/");
  assert.equal(normaliseMountPath("/a/b/../../.."), "/");
  assert.equal(normaliseMountPath("/a/.b/..c/"), "/a/.b/..c");
  assert.equal(normaliseMountPath("rel/x"), "rel/x");
});
