import assert from "node:assert/strict";
import { CLASSES_ATTRIBUTE, DRIVER_NAME, INJECT_LABEL, type ObjectName } from "../api/mod.ts";
import {
  formatFingerprints,
  lastTrustRestart,
  parseFingerprints,
  planTrustRestart,
  type RestartInputs,
  restartSetting,
  templateClasses,
  workloadView,
} from "./trust_restart_plan.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);
const C = "c".repeat(64);
const ON = "cacerts.spiffe.io/restart-on-trust-change";

function deployment(template: Record<string, unknown>, annotations: Record<string, string> = {}) {
  return {
    metadata: {
      namespace: "shop",
      name: "web",
      uid: "u1",
      resourceVersion: "7",
      annotations: { ...annotations, "other.io/x": "y" },
    },
    spec: { template },
  };
}

const injected = {
  metadata: { labels: { [INJECT_LABEL]: "true" } },
  spec: { containers: [{ name: "app" }] },
};

Deno.test("workloadView keeps only our annotations, the injection label and our CSI volumes", () => {
  const view = workloadView(
    "Deployment",
    deployment({
      metadata: {
        labels: { [INJECT_LABEL]: "true", app: "web" },
        annotations: { "cacerts.spiffe.io/inject": "false", "kubectl.kubernetes.io/x": "1" },
      },
      spec: {
        volumes: [
          { name: "data", emptyDir: {} },
          { name: "other", csi: { driver: "secrets-store.csi.k8s.io" } },
          {
            name: "ca",
            csi: { driver: DRIVER_NAME, volumeAttributes: { [CLASSES_ATTRIBUTE]: "x" } },
          },
        ],
      },
    }, { [ON]: "true" }),
    DRIVER_NAME,
  );
  assert.deepEqual(view, {
    kind: "Deployment",
    metadata: {
      namespace: "shop",
      name: "web",
      uid: "u1",
      resourceVersion: "7",
      annotations: { [ON]: "true" },
    },
    template: {
      injectLabel: "true",
      annotations: { "cacerts.spiffe.io/inject": "false" },
      volumes: [{ driver: DRIVER_NAME, classes: "x" }],
    },
  });
});

Deno.test("templateClasses: the injected class for a labelled template, none when opted out", () => {
  const view = workloadView("Deployment", deployment(injected), DRIVER_NAME);
  assert.deepEqual(templateClasses(view, "spire-ca"), [{ namespace: "shop", name: "spire-ca" }]);
  const optedOut = workloadView(
    "Deployment",
    deployment({
      ...injected,
      metadata: { ...injected.metadata, annotations: { "cacerts.spiffe.io/inject": "false" } },
    }),
    DRIVER_NAME,
  );
  assert.deepEqual(templateClasses(optedOut, "spire-ca"), []);
  const unlabelled = workloadView("Deployment", deployment({ spec: {} }), DRIVER_NAME);
  assert.deepEqual(templateClasses(unlabelled, "spire-ca"), []);
});

Deno.test("templateClasses: a template's own CSI volume names its classes, other namespaces too", () => {
  const view = workloadView(
    "StatefulSet",
    deployment({
      ...injected,
      spec: {
        volumes: [{
          name: "ca",
          csi: {
            driver: DRIVER_NAME,
            volumeAttributes: { [CLASSES_ATTRIBUTE]: "extra, spire/shared extra" },
          },
        }],
      },
    }),
    DRIVER_NAME,
  );
  assert.deepEqual(templateClasses(view, "spire-ca"), [
    { namespace: "shop", name: "extra" },
    { namespace: "spire", name: "shared" },
  ]);
  const broken = workloadView(
    "DaemonSet",
    deployment({
      spec: {
        volumes: [{
          csi: { driver: DRIVER_NAME, volumeAttributes: { [CLASSES_ATTRIBUTE]: "a/b/c" } },
        }],
      },
    }),
    DRIVER_NAME,
  );
  assert.deepEqual(templateClasses(broken, "spire-ca"), []);
});

Deno.test("restartSetting: the workload's annotation wins over its namespace's", () => {
  assert.deepEqual(restartSetting({}, undefined), { enabled: false });
  assert.deepEqual(restartSetting({ [ON]: "true" }, undefined), { enabled: true });
  assert.deepEqual(restartSetting({}, { [ON]: "true" }), { enabled: true });
  assert.deepEqual(restartSetting({ [ON]: "false" }, { [ON]: "true" }), { enabled: false });
  assert.deepEqual(restartSetting({ [ON]: "yes" }, { [ON]: "true" }), {
    enabled: false,
    invalid: { on: "workload", value: "yes" },
  });
  assert.deepEqual(restartSetting({}, { [ON]: "1" }), {
    enabled: false,
    invalid: { on: "namespace", value: "1" },
  });
});

Deno.test("fingerprint annotation: written comma-separated, read back, junk dropped", () => {
  assert.equal(formatFingerprints([A, B]), `${A},${B}`);
  assert.deepEqual(parseFingerprints(`${A}, ${B.toUpperCase()},nope`), [A, B]);
  assert.deepEqual(parseFingerprints(""), []);
  assert.equal(parseFingerprints(undefined), undefined);
});

Deno.test("lastTrustRestart reads the template annotation; a bad value is no time", () => {
  const at = "2026-12-01T10:00:00.000Z";
  const view = workloadView(
    "Deployment",
    deployment({ metadata: { annotations: { "cacerts.spiffe.io/trust-restarted-at": at } } }),
    DRIVER_NAME,
  );
  assert.equal(lastTrustRestart(view)?.toISOString(), at);
  view.template.annotations["cacerts.spiffe.io/trust-restarted-at"] = "soon";
  assert.equal(lastTrustRestart(view), undefined);
});

const SPIRE: ObjectName = { namespace: "shop", name: "spire-ca" };
const EXTRA: ObjectName = { namespace: "shop", name: "extra" };
const NOW = new Date("2026-12-01T12:00:00Z");

function inputs(overrides: Partial<RestartInputs>): RestartInputs {
  const sets: Record<string, string[]> = { "shop/spire-ca": [A, B], "shop/extra": [C] };
  return {
    enabled: true,
    classes: [SPIRE],
    fingerprintsOf: (n) => sets[`${n.namespace}/${n.name}`],
    recorded: [A, B],
    lastRestart: undefined,
    pendingSince: undefined,
    now: NOW,
    settleMs: 30_000,
    intervalMs: 300_000,
    ...overrides,
  };
}

Deno.test("plan: first sight records the current set and rolls nothing out", () => {
  assert.deepEqual(planTrustRestart(inputs({ recorded: undefined, classes: [SPIRE, EXTRA] })), {
    action: "record",
    fingerprints: [A, B, C],
  });
});

Deno.test("plan: nothing without opt-in, without classes, or while a class is unknown", () => {
  assert.deepEqual(planTrustRestart(inputs({ enabled: false, recorded: [A] })), {
    action: "none",
    why: "disabled",
  });
  assert.deepEqual(planTrustRestart(inputs({ classes: [] })), {
    action: "none",
    why: "no-classes",
  });
  assert.deepEqual(
    planTrustRestart(
      inputs({ classes: [SPIRE, { namespace: "shop", name: "gone" }], recorded: [] }),
    ),
    { action: "none", why: "unknown-class" },
  );
});

Deno.test("plan: a removal alone restarts nothing", () => {
  assert.deepEqual(planTrustRestart(inputs({ recorded: [A, B, C] })), {
    action: "none",
    why: "no-gain",
  });
});

Deno.test("plan: a gain waits for the settle delay, then rolls out with the new baseline", () => {
  const first = planTrustRestart(inputs({ recorded: [A] }));
  assert.deepEqual(first, {
    action: "wait",
    until: new Date(NOW.getTime() + 30_000),
    gained: [{ fingerprint: B, classes: [SPIRE] }],
  });
  const settled = planTrustRestart(
    inputs({ recorded: [A], pendingSince: new Date(NOW.getTime() - 30_000) }),
  );
  assert.deepEqual(settled, {
    action: "restart",
    fingerprints: [A, B],
    gained: [{ fingerprint: B, classes: [SPIRE] }],
  });
});

Deno.test("plan: a second gain inside the settle delay joins the first rollout", () => {
  const since = new Date(NOW.getTime() - 10_000);
  const plan = planTrustRestart(
    inputs({ recorded: [], classes: [SPIRE, EXTRA], pendingSince: since }),
  );
  assert.equal(plan.action, "wait");
  assert.equal(plan.action === "wait" && plan.until.getTime(), since.getTime() + 30_000);
  assert.deepEqual(plan.action === "wait" && plan.gained.map((g) => g.fingerprint), [A, B, C]);
});

Deno.test("plan: at most one rollout per interval", () => {
  const plan = planTrustRestart(inputs({
    recorded: [A],
    pendingSince: new Date(NOW.getTime() - 60_000),
    lastRestart: new Date(NOW.getTime() - 120_000),
  }));
  assert.equal(plan.action, "wait");
  assert.equal(plan.action === "wait" && plan.until.getTime(), NOW.getTime() + 180_000);
  const later = planTrustRestart(inputs({
    recorded: [A],
    pendingSince: new Date(NOW.getTime() - 60_000),
    lastRestart: new Date(NOW.getTime() - 300_000),
  }));
  assert.equal(later.action, "restart");
});
