import assert from "node:assert/strict";
import { DRIVER_NAME } from "../api/mod.ts";
import type { Logger } from "../cli/mod.ts";
import { KubeApiError } from "../kube/mod.ts";
import { Registry } from "../prometheus/mod.ts";
import type { Feed, FeedHandlers } from "./informer_feed.ts";
import {
  type ClassTrust,
  classTrust,
  type NamespaceView,
  restartMessage,
  TRUST_RESTART_ERRORS,
  TRUST_RESTARTS,
  TrustRestartController,
  type WorkloadWriter,
} from "./trust_restart.ts";
import { type WorkloadView, workloadView } from "./trust_restart_plan.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);
const ON = "cacerts.spiffe.io/restart-on-trust-change";
const TRUSTED = "cacerts.spiffe.io/trusted-fingerprints";

/** An in-memory feed: what `set` delivers, before and after start. */
class ListFeed<T> implements Feed<T> {
  #handlers: FeedHandlers<T> | undefined;
  constructor(readonly initial: T[]) {}
  start(handlers: FeedHandlers<T>): Promise<void> {
    this.#handlers = handlers;
    for (const o of this.initial) handlers.upsert(o);
    return Promise.resolve();
  }
  set(o: T): void {
    this.#handlers!.upsert(o);
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

interface Write {
  view: WorkloadView;
  body: Record<string, unknown>;
}

/** Records writes; `failures` are thrown by the next patches, in order. */
class FakeWriter implements WorkloadWriter {
  readonly patches: Write[] = [];
  readonly events: string[] = [];
  failures: unknown[] = [];
  patch(view: WorkloadView, body: Record<string, unknown>): Promise<void> {
    const failure = this.failures.shift();
    if (failure !== undefined) return Promise.reject(failure);
    this.patches.push({ view, body });
    return Promise.resolve();
  }
  event(_view: WorkloadView, reason: string, message: string): Promise<void> {
    this.events.push(`${reason}: ${message}`);
    return Promise.resolve();
  }
}

function web(annotations: Record<string, string>, resourceVersion = "1"): WorkloadView {
  return workloadView("Deployment", {
    metadata: { namespace: "shop", name: "web", resourceVersion, annotations },
    spec: {
      template: {
        metadata: { labels: { "spiffe.io/spire-managed-identity": "true" } },
        spec: { containers: [{ name: "app" }] },
      },
    },
  }, DRIVER_NAME);
}

function cls(fingerprints: string[] | undefined): ClassTrust {
  return { metadata: { namespace: "shop", name: "spire-ca", resourceVersion: "1" }, fingerprints };
}

const shop: NamespaceView = { metadata: { name: "shop", resourceVersion: "1", annotations: {} } };

async function settle(controller: TrustRestartController): Promise<void> {
  for (let i = 0; i < 200 && controller.pending > 0; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
}

function setup(workload: WorkloadView, fingerprints: string[] | undefined) {
  const workloads = new ListFeed([workload]);
  const classes = new ListFeed([cls(fingerprints)]);
  const writer = new FakeWriter();
  const metrics = new Registry();
  const logged: string[] = [];
  const log: Logger = {
    debug: (m) => void logged.push(`debug ${m}`),
    info: (m) => void logged.push(`info ${m}`),
    warn: (m) => void logged.push(`warn ${m}`),
    error: (m) => void logged.push(`error ${m}`),
    with: () => log,
  };
  const controller = new TrustRestartController({
    workloads,
    namespaces: new ListFeed([shop]),
    classes,
    writer,
    className: "spire-ca",
    settleMs: 0,
    intervalMs: 0,
    log,
    metrics,
  });
  return { controller, workloads, classes, writer, metrics, logged };
}

Deno.test("controller: records the baseline once on first sight, with the resourceVersion", async () => {
  const { controller, writer } = setup(web({ [ON]: "true" }, "7"), [A]);
  await controller.start();
  await settle(controller);
  assert.deepEqual(writer.patches.map((w) => w.body), [{
    metadata: { resourceVersion: "7", annotations: { [TRUSTED]: A } },
  }]);
  assert.deepEqual(writer.events, []);
  await controller.stop();
});

Deno.test("controller: a class not yet Ready holds every decision", async () => {
  const { controller, writer, classes } = setup(web({ [ON]: "true" }), undefined);
  await controller.start();
  await settle(controller);
  assert.deepEqual(writer.patches, []);
  classes.set(cls([A]));
  await settle(controller);
  assert.equal(writer.patches.length, 1);
  await controller.stop();
});

Deno.test("controller: a gain rolls out once, with an Event and the metric", async () => {
  const { controller, writer, classes, metrics } = setup(
    web({ [ON]: "true", [TRUSTED]: A }),
    [A],
  );
  await controller.start();
  await settle(controller);
  assert.equal(writer.patches.length, 0);
  classes.set(cls([A, B]));
  await settle(controller);
  assert.equal(writer.patches.length, 1);
  const body = writer.patches[0].body as {
    metadata: { annotations: Record<string, string> };
    spec: { template: { metadata: { annotations: Record<string, string> } } };
  };
  assert.equal(body.metadata.annotations[TRUSTED], [A, B].join(","));
  assert.ok(body.spec.template.metadata.annotations["cacerts.spiffe.io/trust-restarted-at"]);
  assert.equal(writer.events.length, 1);
  assert.match(
    writer.events[0],
    /^TrustRestart: .*CAProviderClass shop\/spire-ca gained CA sha256:b{64}/,
  );
  assert.match(metrics.render(), new RegExp(`^${TRUST_RESTARTS}\\{kind="Deployment"\\} 1$`, "m"));
  await controller.stop();
});

Deno.test("controller: a 409 writes nothing and plans again on the next object", async () => {
  const { controller, writer, classes, workloads } = setup(
    web({ [ON]: "true", [TRUSTED]: A }),
    [A],
  );
  await controller.start();
  writer.failures = [new KubeApiError("PATCH /x", 409, "{}")];
  classes.set(cls([A, B]));
  await settle(controller);
  assert.deepEqual(writer.patches, []);
  assert.deepEqual(writer.events, []);
  // The replica that won wrote the new baseline: nothing is left to do.
  workloads.set(web({ [ON]: "true", [TRUSTED]: `${A},${B}` }, "2"));
  await settle(controller);
  assert.deepEqual(writer.patches, []);
  await controller.stop();
});

Deno.test("controller: other write failures are counted and retried", async () => {
  const { controller, writer, metrics, logged } = setup(web({ [ON]: "true" }), [A]);
  writer.failures = [new KubeApiError("PATCH /x", 500, "{}")];
  await controller.start();
  await new Promise((r) => setTimeout(r, 20));
  assert.match(metrics.render(), new RegExp(`^${TRUST_RESTART_ERRORS} 1$`, "m"));
  assert.ok(logged.some((l) => l.startsWith("warn trust-restart write failed")), logged.join("\n"));
  await controller.stop();
});

Deno.test("controller: an invalid annotation value is warned once and counts as unset", async () => {
  const { controller, writer, workloads, logged } = setup(web({ [ON]: "yes" }), [A]);
  await controller.start();
  workloads.set(web({ [ON]: "yes" }, "2"));
  await settle(controller);
  assert.deepEqual(writer.patches, []);
  assert.equal(logged.filter((l) => l.includes("neither")).length, 1);
  await controller.stop();
});

Deno.test("classTrust: fingerprints only when Ready for the current generation", () => {
  const object = (status: Record<string, unknown>, generation = 2) => ({
    metadata: { namespace: "shop", name: "c", resourceVersion: "9", generation },
    status,
  });
  const ready = { type: "Ready", status: "True" };
  assert.deepEqual(
    classTrust(object({ observedGeneration: 2, fingerprints: [B, A, A], conditions: [ready] }))
      .fingerprints,
    [A, B],
  );
  assert.equal(
    classTrust(object({ observedGeneration: 1, fingerprints: [A], conditions: [ready] }))
      .fingerprints,
    undefined,
  );
  assert.equal(
    classTrust(object({
      observedGeneration: 2,
      fingerprints: [A],
      conditions: [{ type: "Ready", status: "False" }],
    })).fingerprints,
    undefined,
  );
});

Deno.test("restartMessage names each class with its gained CAs and stays under 1000 characters", () => {
  const view = web({});
  const message = restartMessage(view, [
    { fingerprint: A, classes: [{ namespace: "shop", name: "spire-ca" }] },
    { fingerprint: B, classes: [{ namespace: "shop", name: "extra" }] },
  ]);
  assert.match(message, /^rolled out Deployment shop\/web: /);
  assert.ok(message.includes(`CAProviderClass shop/spire-ca gained CA sha256:${A}`));
  assert.ok(message.includes(`CAProviderClass shop/extra gained CA sha256:${B}`));
  const many = restartMessage(
    view,
    Array.from({ length: 40 }, (_, i) => ({
      fingerprint: String(i).padStart(64, "0"),
      classes: [{ namespace: "shop", name: "spire-ca" }],
    })),
  );
  assert.equal(many.length, 1000);
});
