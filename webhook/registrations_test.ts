import assert from "node:assert/strict";
import { join } from "node:path";
import { createLogger } from "../cli/mod.ts";
import { waitFor } from "../tests/harness/process.ts";
import {
  type AppliedObject,
  CLUSTER_SPIFFE_ID_CRD,
  type ClusterSpiffeId,
  loadRegistrations,
  parseRegistrations,
  type RegistrationApi,
  RegistrationApplyError,
  RegistrationFileError,
  RegistrationSync,
  ResourceNotServedError,
} from "./registrations.ts";
import { setTimeout as delay } from "node:timers/promises";

const SHIPPED = new URL("../manifests/spire/clusterspiffeids.yaml", import.meta.url).pathname;

const cid = (name: string, ttl = "60s") =>
  `apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata:
  name: ${name}
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/workload/${name}"
  podSelector:
    matchLabels:
      app: ${name}
  ttl: ${ttl}
`;

/** A ConfigMap volume's layout: files are symlinks into `..data`, itself a symlink. */
async function configMapDir(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "registrations-" });
  await Deno.mkdir(join(dir, "..2026_01_01_00_00_00.1"));
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(join(dir, "..2026_01_01_00_00_00.1", name), text);
  }
  await Deno.symlink("..2026_01_01_00_00_00.1", join(dir, "..data"));
  for (const name of Object.keys(files)) {
    await Deno.symlink(join("..data", name), join(dir, name));
  }
  return dir;
}

function problem(fn: () => unknown): RegistrationFileError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RegistrationFileError, String(error));
    return error;
  }
  assert.fail("expected a RegistrationFileError");
}

Deno.test("registrations: the shipped file parses into the three ClusterSPIFFEIDs", async () => {
  const text = await Deno.readTextFile(SHIPPED);
  const registrations = parseRegistrations(text, "clusterspiffeids.yaml");
  assert.deepEqual(registrations.map((r) => r.object.metadata.name), [
    "spire-cacerts-webhook",
    "spiffe-demo-server",
    "spiffe-demo-client",
  ]);
  assert.deepEqual(registrations.map((r) => r.document), [1, 2, 3]);
  const webhook = registrations[0].object;
  assert.equal(webhook.apiVersion, "spire.spiffe.io/v1alpha1");
  assert.equal(webhook.kind, "ClusterSPIFFEID");
  assert.deepEqual(webhook.metadata.labels, { "app.kubernetes.io/managed-by": "spire-cacerts" });
  assert.equal(webhook.spec.ttl, "60m");
  assert.equal(registrations[1].object.spec.ttl, "10s");
  // A document's line is its first line of content, after the file's leading comment.
  const first = text.split("\n").indexOf("apiVersion: spire.spiffe.io/v1alpha1") + 1;
  assert.ok(first > 1);
  assert.equal(registrations[0].line, first);
});

Deno.test("registrations: comment-only documents and trailing markers are skipped", () => {
  const text = `# header\n---\n${cid("a")}---\n# nothing here\n---\n${cid("b")}---\n`;
  const registrations = parseRegistrations(text, "f.yaml");
  assert.deepEqual(registrations.map((r) => [r.object.metadata.name, r.document]), [
    ["a", 1],
    ["b", 2],
  ]);
  assert.equal(registrations[0].line, 3);
});

Deno.test("registrations: another kind of object is refused, naming file, document and object", () => {
  const text = `${cid("a")}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n`;
  const error = problem(() => parseRegistrations(text, "ids.yaml"));
  assert.equal(error.file, "ids.yaml");
  assert.equal(error.document, 2);
  assert.equal(error.object, "ConfigMap stray");
  assert.match(error.message, /^registrations ids\.yaml, document 2, line 12, ConfigMap stray: /);
  assert.match(error.message, /is not spire\.spiffe\.io\/v1alpha1 ClusterSPIFFEID/);
  assert.match(error.message, /put other objects in the kustomize resources/);

  const otherVersion = problem(() =>
    parseRegistrations(cid("a").replace("v1alpha1", "v1"), "ids.yaml")
  );
  assert.match(otherVersion.message, /ClusterSPIFFEID a: apiVersion "spire\.spiffe\.io\/v1"/);
});

Deno.test("registrations: broken YAML is refused with its line", () => {
  const text = `${cid("a")}---\n${cid("b").replace("  podSelector:", "  podSelector: [")}`;
  const error = problem(() => parseRegistrations(text, "ids.yaml"));
  assert.equal(error.document, 2);
  assert.match(error.message, /^registrations ids\.yaml, document 2, line \d+: not valid YAML \(/);
  assert.match(error.message, /fix the syntax$/);
  assert.ok(error.cause instanceof Error);
  assert.ok(error.line! > 11, `line ${error.line} is in the second document`);
});

Deno.test("registrations: fields that do not belong are refused with the fix", () => {
  const cases: [string, RegExp][] = [
    [cid("a").replace("  name: a\n", ""), /metadata\.name is missing/],
    [cid("a").replace("  name: a\n", "  name: a\n  namespace: x\n"), /cluster-scoped; remove it/],
    [cid("a").replace("  name: a\n", "  name: Bad_Name\n"), /not a DNS subdomain/],
    [cid("a") + "status:\n  stats: {}\n", /status is written by spire-controller-manager/],
    [cid("a").replace(/spec:[\s\S]*/, ""), /spec is missing/],
    [cid("a").replace("  name: a\n", "  name: a\n  uid: x\n"), /metadata\.uid is set by the/],
    [
      cid("a").replace(
        "  name: a\n",
        "  name: a\n  labels:\n    app.kubernetes.io/managed-by: x\n",
      ),
      /managed-by is "x"/,
    ],
    [cid("a").replace("  name: a\n", "  name: a\n  labels:\n    on: true\n"), /quote values/],
    ["- 1\n- 2\n", /found a list/],
  ];
  for (const [text, expected] of cases) {
    const error = problem(() => parseRegistrations(text, "f.yaml"));
    assert.match(error.message, expected);
  }
});

Deno.test("registrations: a ConfigMap-style directory loads; hidden and non-YAML entries skipped", async () => {
  const dir = await configMapDir({
    "b.yaml": cid("two"),
    "a.yaml": cid("one"),
    "README.md": "not read",
  });
  try {
    const registrations = await loadRegistrations(dir);
    assert.deepEqual(registrations.map((r) => r.object.metadata.name), ["one", "two"]);
    assert.equal(registrations[0].file, join(dir, "a.yaml"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("registrations: the same name in two files, a missing directory", async () => {
  const dir = await configMapDir({ "a.yaml": cid("one"), "b.yaml": cid("one") });
  try {
    await assert.rejects(
      loadRegistrations(dir),
      (error: Error) =>
        error instanceof RegistrationFileError &&
        /b\.yaml, document 1, line 1, ClusterSPIFFEID one: .*already defined in .*a\.yaml/.test(
          error.message,
        ),
    );
    await assert.rejects(
      loadRegistrations(join(dir, "missing")),
      /cannot read the directory .*fix --registrations-dir/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** An apiserver stand-in: a store of applied objects, the CRD served or not, refusals. */
class FakeApi implements RegistrationApi {
  served = false;
  forbidden = new Set<string>();
  store = new Map<string, AppliedObject & { spec: string }>();
  calls: { name: string; at: number }[] = [];
  #uid = 0;

  apply(object: ClusterSpiffeId): Promise<AppliedObject> {
    const name = object.metadata.name;
    this.calls.push({ name, at: performance.now() });
    if (!this.served) {
      return Promise.reject(new ResourceNotServedError(CLUSTER_SPIFFE_ID_CRD));
    }
    if (this.forbidden.has(name)) {
      return Promise.reject(new RegistrationApplyError(name, 403, `ClusterSPIFFEID ${name}: 403`));
    }
    assert.equal(object.metadata.labels["app.kubernetes.io/managed-by"], "spire-cacerts");
    const spec = JSON.stringify(object.spec);
    let current = this.store.get(name);
    if (!current) {
      current = { uid: `uid-${++this.#uid}`, generation: 1, spec };
      this.store.set(name, current);
    } else if (current.spec !== spec) {
      current.generation++;
      current.spec = spec;
    }
    return Promise.resolve({ uid: current.uid, generation: current.generation });
  }
}

function logSink() {
  const lines: { level: string; msg: string; [key: string]: unknown }[] = [];
  const log = createLogger("debug", (line) => lines.push(JSON.parse(line)));
  const count = (pattern: RegExp, level?: string) =>
    lines.filter((l) => pattern.test(l.msg) && (level === undefined || l.level === level)).length;
  return { lines, log, count };
}

Deno.test({
  name: "registration sync: waits for the CRD with back-off, logs once, then applies every object",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await configMapDir({ "ids.yaml": cid("one") + "---\n" + cid("two") });
    const api = new FakeApi();
    const { log, count } = logSink();
    const sync = new RegistrationSync({
      dir,
      api,
      resyncMs: 60_000,
      retryMinMs: 20,
      retryMaxMs: 80,
      log,
    });
    try {
      await sync.start();
      await waitFor("six tries", () => api.calls.length >= 6, { timeoutMs: 5_000 });
      // The first try of each pass stops the pass: one call per pass while the CRD is missing.
      const gaps = api.calls.slice(1, 6).map((c, i) => c.at - api.calls[i].at);
      assert.ok(gaps[0] >= 15 && gaps[1] >= 35 && gaps[2] >= 75, `doubling: ${gaps}`);
      assert.ok(gaps[3] < 160 && gaps[4] < 160, `capped at 80 ms: ${gaps}`);
      assert.equal(count(/^waiting for CRD clusterspiffeids\.spire\.spiffe\.io/, "info"), 1);
      assert.equal(count(/ClusterSPIFFEIDs applied/), 0);

      api.served = true;
      await sync.applied();
      assert.deepEqual([...api.store.keys()], ["one", "two"]);
      assert.equal(count(/ClusterSPIFFEIDs applied/, "info"), 1);
      // Nothing more until the resync period or a file change.
      const calls = api.calls.length;
      await delay(200);
      assert.equal(api.calls.length, calls);
      assert.equal(count(/^waiting for CRD/), 1);
    } finally {
      await sync.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "registration sync: repairs deletions and edits on the periodic pass",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await configMapDir({ "ids.yaml": cid("one") + "---\n" + cid("two") });
    const api = new FakeApi();
    api.served = true;
    const { log, count } = logSink();
    const sync = new RegistrationSync({ dir, api, resyncMs: 100, log });
    try {
      await sync.start();
      await sync.applied();
      const firstUid = api.store.get("one")!.uid;
      api.store.delete("one");
      await waitFor("one re-created", () => api.store.has("one"), { timeoutMs: 2_000 });
      assert.notEqual(api.store.get("one")!.uid, firstUid);
      await waitFor("log", () => count(/was deleted; created again/, "info") === 1);

      api.store.get("two")!.spec = "{}"; // someone edited the spec
      await waitFor("two repaired", () => api.store.get("two")!.spec.includes("workload/two"), {
        timeoutMs: 2_000,
      });
      await waitFor("log", () => count(/spec differed from the file/, "info") === 1);
      assert.equal(count(/ClusterSPIFFEIDs applied/), 1, "no repeat of the first message");
    } finally {
      await sync.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "registration sync: a refused object does not hold back the others; errors logged once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await configMapDir({ "ids.yaml": cid("one") + "---\n" + cid("two") });
    const api = new FakeApi();
    api.served = true;
    api.forbidden.add("one");
    const { log, count } = logSink();
    const sync = new RegistrationSync({ dir, api, retryMinMs: 10, retryMaxMs: 20, log });
    try {
      await sync.start();
      await waitFor("two applied", () => api.store.has("two"));
      await waitFor("retries", () => api.calls.filter((c) => c.name === "one").length >= 4);
      assert.equal(count(/ClusterSPIFFEID not applied; retrying/, "warn"), 1);
      const result = await sync.syncOnce();
      assert.ok(result.failed.one instanceof RegistrationApplyError);
      assert.equal(result.outcomes.two, "unchanged");
      api.forbidden.clear();
      await sync.applied();
      assert.ok(api.store.has("one"));
    } finally {
      await sync.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "registration sync: a changed file is applied at once; a broken edit keeps the last set",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await configMapDir({ "ids.yaml": cid("one") });
    const api = new FakeApi();
    api.served = true;
    const { log, count } = logSink();
    const sync = new RegistrationSync({ dir, api, resyncMs: 60_000, debounceMs: 20, log });
    // Updates the way kubelet does: a new timestamped directory, then ..data swapped to it.
    let generation = 1;
    const update = async (text: string) => {
      const next = `..2026_01_01_00_00_00.${++generation}`;
      await Deno.mkdir(join(dir, next));
      await Deno.writeTextFile(join(dir, next, "ids.yaml"), text);
      await Deno.symlink(next, join(dir, "..data_tmp"));
      await Deno.rename(join(dir, "..data_tmp"), join(dir, "..data"));
    };
    try {
      await sync.start();
      await sync.applied();
      await update(cid("one", "5m") + "---\n" + cid("three"));
      await waitFor("three applied", () => api.store.has("three"), { timeoutMs: 3_000 });
      assert.match(api.store.get("one")!.spec, /"ttl":"5m"/);
      assert.equal(count(/registrations changed; applying/, "info"), 1);

      await update(cid("one", "7m") + "---\nkind: Secret\n");
      await waitFor("error logged", () => count(/registrations unusable/, "error") === 1, {
        timeoutMs: 3_000,
      });
      assert.match(api.store.get("one")!.spec, /"ttl":"5m"/, "the last good set stays applied");
      assert.deepEqual(sync.registrations().map((r) => r.object.metadata.name), ["one", "three"]);
    } finally {
      await sync.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
