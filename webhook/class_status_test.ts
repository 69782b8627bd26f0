import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { makeCert, type TestCert } from "../trust_store/testdata/pki.ts";
import { objectKey, type WatchedObject } from "../kube/mod.ts";
import { Registry } from "../prometheus/mod.ts";
import {
  bundleWatch,
  type ClassFeed,
  type ClassObject,
  type ClassStatus,
  ClassStatusController,
  computeClassStatus,
  forbiddenBundleMessage,
  forbiddenMessage,
  MAX_DROPPED_ENTRIES,
  MAX_DROPPED_TEXT,
  nextReadyCondition,
  rfc3339,
  type SourceFeed,
  type SourceState,
  statusDiffers,
} from "./class_status.ts";
import { setTimeout as delay } from "node:timers/promises";

const NOW = new Date("2030-06-01T12:00:00Z");
const DAY = 86_400_000;

/** Certificates valid around NOW, made once. */
const pki = await (async () => {
  const at = (days: number) => new Date(NOW.getTime() + days * DAY);
  const rootA = await makeCert({
    subject: "CN=Root A",
    notBefore: at(-10),
    notAfter: at(30),
  });
  const rootB = await makeCert({
    subject: "CN=Root B",
    notBefore: at(-10),
    notAfter: at(5),
  });
  const expired = await makeCert({ subject: "CN=Old", notBefore: at(-10), notAfter: at(-1) });
  const leaf = await makeCert({
    subject: "CN=leaf",
    issuer: rootA,
    ca: false,
    notBefore: at(-1),
    notAfter: at(2),
  });
  return { rootA, rootB, expired, leaf, at };
})();

function sha(cert: TestCert): string {
  return createHash("sha256").update(new X509Certificate(cert.pem).raw).digest("hex");
}

function secret(data: Record<string, string>, type = "Opaque"): Record<string, unknown> {
  return {
    metadata: { resourceVersion: "1" },
    type,
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, btoa(v)])),
  };
}

function cls(refs: unknown, extra: Partial<ClassObject> = {}): ClassObject {
  return {
    metadata: { namespace: "shop", name: "trust", generation: 3, resourceVersion: "10" },
    spec: refs === undefined ? {} : { refs },
    ...extra,
  };
}

function lookupFrom(objects: Record<string, SourceState>) {
  return (o: WatchedObject): SourceState => objects[objectKey(o)] ?? { object: null };
}

Deno.test("status: two CAs in one Secret are counted, fingerprinted and the earliest NotAfter kept", async () => {
  const { status, recheckAt } = await computeClassStatus(
    cls([{ kind: "Secret", namespace: "spire", name: "bundle", key: "ca.crt" }]),
    lookupFrom({
      "Secret/spire/bundle": {
        // Duplicate, expired and leaf certificates are dropped as the driver drops them.
        object: secret({
          "ca.crt": pki.rootA.pem + pki.rootB.pem + pki.rootA.pem + pki.expired.pem + pki.leaf.pem,
        }),
      },
    }),
    { now: NOW },
  );
  assert.equal(status.observedGeneration, 3);
  assert.equal(status.certificates, 2);
  assert.deepEqual(status.fingerprints, [sha(pki.rootA), sha(pki.rootB)].sort());
  assert.equal(status.earliestNotAfter, rfc3339(pki.at(5)));
  assert.deepEqual(recheckAt, new Date(rfc3339(pki.at(5))));
  assert.deepEqual(status.resolvedRefs, [
    {
      kind: "Secret",
      namespace: "spire",
      name: "bundle",
      key: "ca.crt",
      keySource: "Ref",
      certificates: 2,
    },
  ]);
  const [ready] = status.conditions;
  assert.equal(ready.type, "Ready");
  assert.equal(ready.status, "True");
  assert.equal(ready.reason, "Resolved");
  assert.equal(ready.observedGeneration, 3);
  assert.equal(ready.lastTransitionTime, "2030-06-01T12:00:00Z");
  assert.equal(
    ready.message,
    `2 CA certificates from Secret spire/bundle key ca.crt; earliest NotAfter ${
      rfc3339(pki.at(5))
    }; 2 certificates dropped (1 expired, 1 non_ca; see status.droppedCertificates)`,
  );
  // The duplicate of Root A is merged, not dropped.
  assert.equal(status.droppedCount, 2);
  assert.deepEqual(status.droppedCertificates, [
    {
      reason: "expired",
      subject: "CN=Old",
      sha256: sha(pki.expired),
      source: "Secret spire/bundle key ca.crt",
      detail: `notAfter ${pki.at(-1).toISOString()}`,
    },
    {
      reason: "non_ca",
      subject: "CN=leaf",
      sha256: sha(pki.leaf),
      source: "Secret spire/bundle key ca.crt",
    },
  ]);
});

Deno.test("status: dropped certificates are bounded to MAX_DROPPED_ENTRIES with the total, subjects cut", async () => {
  const long = "x".repeat(400);
  const many = [];
  for (let i = 0; i < MAX_DROPPED_ENTRIES + 5; i++) {
    many.push(
      await makeCert({
        subject: `CN=Old ${i}${i === 0 ? ` ${long}` : ""}`,
        notBefore: pki.at(-10),
        notAfter: pki.at(-1),
      }),
    );
  }
  const { status } = await computeClassStatus(
    cls([{ kind: "Secret", namespace: "spire", name: "bundle", key: "ca.crt" }]),
    lookupFrom({
      "Secret/spire/bundle": {
        object: secret({ "ca.crt": pki.rootA.pem + many.map((c) => c.pem).join("") }),
      },
    }),
    { now: NOW },
  );
  assert.equal(status.conditions[0].status, "True");
  assert.equal(status.certificates, 1);
  assert.equal(status.droppedCount, MAX_DROPPED_ENTRIES + 5);
  assert.equal(status.droppedCertificates?.length, MAX_DROPPED_ENTRIES);
  const first = status.droppedCertificates![0];
  assert.equal(first.subject.length, MAX_DROPPED_TEXT);
  assert.ok(first.subject.startsWith("CN=Old 0 xxx") && first.subject.endsWith("…"));
  assert.match(status.conditions[0].message, /; 25 certificates dropped \(25 expired; see/);
});

Deno.test("status: a not-yet-valid CA is listed and the status is rechecked when it becomes valid", async () => {
  const future = await makeCert({ subject: "CN=Next", notBefore: pki.at(1), notAfter: pki.at(60) });
  const ref = [{ kind: "Secret", namespace: "spire", name: "bundle", key: "ca.crt" }];
  const ready = await computeClassStatus(
    cls(ref),
    lookupFrom({
      "Secret/spire/bundle": { object: secret({ "ca.crt": pki.rootA.pem + future.pem }) },
    }),
    { now: NOW },
  );
  assert.deepEqual(ready.status.droppedCertificates?.map((d) => d.reason), ["not_yet_valid"]);
  assert.deepEqual(ready.recheckAt, future.cert.notBefore);
  const none = await computeClassStatus(
    cls(ref),
    lookupFrom({ "Secret/spire/bundle": { object: secret({ "ca.crt": future.pem }) } }),
    { now: NOW },
  );
  assert.equal(none.status.conditions[0].reason, "NoUsableCA");
  assert.equal(none.status.droppedCount, 1);
  assert.equal(none.status.droppedCertificates?.[0].subject, "CN=Next");
  assert.deepEqual(none.recheckAt, future.cert.notBefore);
  const later = await computeClassStatus(
    cls(ref),
    lookupFrom({ "Secret/spire/bundle": { object: secret({ "ca.crt": future.pem }) } }),
    { now: pki.at(2) },
  );
  assert.equal(later.status.conditions[0].status, "True");
  assert.equal(later.status.droppedCount, undefined);
  assert.equal(later.status.droppedCertificates, undefined);
});

Deno.test("status: a keyless ref says which key it read, and when tls.crt was the fallback", async () => {
  const { status } = await computeClassStatus(
    cls([{ kind: "Secret", name: "web-tls" }, { kind: "ConfigMap", name: "roots" }]),
    lookupFrom({
      "Secret/shop/web-tls": {
        object: secret(
          { "tls.crt": pki.rootA.pem, "tls.key": pki.rootA.keyPem },
          "kubernetes.io/tls",
        ),
      },
      "ConfigMap/shop/roots": { object: { data: { "ca.crt": pki.rootB.pem } } },
    }),
    { now: NOW },
  );
  assert.deepEqual(status.resolvedRefs, [
    {
      kind: "Secret",
      namespace: "shop",
      name: "web-tls",
      key: "tls.crt",
      keySource: "Fallback",
      certificates: 1,
    },
    {
      kind: "ConfigMap",
      namespace: "shop",
      name: "roots",
      key: "ca.crt",
      keySource: "Default",
      certificates: 1,
    },
  ]);
  assert.match(
    status.conditions[0].message,
    /^2 CA certificates from Secret shop\/web-tls key tls\.crt \(ref without key; the object has no ca\.crt\), ConfigMap shop\/roots key ca\.crt \(ref without key\);/,
  );
  assert.doesNotMatch(JSON.stringify(status), /PRIVATE KEY|BEGIN|MII/, "no key material");
});

Deno.test("status: missing, keyless-without-keys, forbidden, unreadable and invalid refs", async () => {
  const refs = [{ kind: "Secret", namespace: "spire", name: "bundle" }];
  const cases: [SourceState, string, RegExp][] = [
    [
      { object: null },
      "SourceNotFound",
      /^Secret spire\/bundle \(from CAProviderClass shop\/trust\) not found$/,
    ],
    [
      { object: secret({ "tls.key": pki.rootA.keyPem }) },
      "KeyNotFound",
      /^Secret spire\/bundle \(from CAProviderClass shop\/trust\) has neither key "ca\.crt" nor "tls\.crt".*keys present: tls\.key\./,
    ],
    [
      { object: null, error: Object.assign(new Error("forbidden"), { code: 403 }) },
      "Forbidden",
      /^cannot read Secret spire\/bundle: .*namespace "spire".*`kubectl create rolebinding spire-cacerts-source-reader --clusterrole=spire-cacerts-source-reader --serviceaccount=spire-cacerts:spire-cacerts-webhook -n spire`$/,
    ],
    [
      { object: null, error: Object.assign(new Error("boom"), { code: 500 }) },
      "SourceUnreadable",
      /^cannot read Secret spire\/bundle \(from CAProviderClass shop\/trust\): HTTP 500; retrying$/,
    ],
    [
      { object: secret({ "ca.crt": "not a certificate" }) },
      "InvalidPEM",
      /^Secret spire\/bundle key ca\.crt: .*\(from CAProviderClass shop\/trust\)$/,
    ],
    [
      { object: secret({ "ca.crt": pki.expired.pem + pki.leaf.pem }) },
      "NoUsableCA",
      /^CAProviderClass shop\/trust: no usable CA certificate; Secret spire\/bundle key ca\.crt \(ref without key\) holds no usable CA \(dropped expired CN=Old.*dropped non-CA CN=leaf/,
    ],
  ];
  for (const [state, reason, message] of cases) {
    const { status, recheckAt } = await computeClassStatus(
      cls(refs),
      lookupFrom({ "Secret/spire/bundle": state }),
      { now: NOW },
    );
    const [ready] = status.conditions;
    assert.equal(ready.status, "False", reason);
    assert.equal(ready.reason, reason);
    assert.match(ready.message, message);
    assert.doesNotMatch(ready.message, /BEGIN|MII/, "never key material");
    assert.equal(status.certificates, 0);
    assert.equal(status.fingerprints, undefined);
    assert.equal(status.earliestNotAfter, undefined);
    assert.equal(recheckAt, undefined);
    assert.equal(status.resolvedRefs?.[0].name, "bundle");
  }
  const invalid = await computeClassStatus(cls(undefined), lookupFrom({}), { now: NOW });
  assert.equal(invalid.status.conditions[0].reason, "InvalidRef");
  assert.equal(invalid.status.conditions[0].message, "CAProviderClass shop/trust has no spec.refs");
  assert.equal(invalid.status.resolvedRefs, undefined);
});

Deno.test("status: every failing ref is named, the first one gives the reason", async () => {
  const { status } = await computeClassStatus(
    cls([
      { kind: "Secret", name: "gone" },
      { kind: "ConfigMap", namespace: "other", name: "locked", key: "bundle.crt" },
    ]),
    lookupFrom({
      "ConfigMap/other/locked": { object: null, error: { code: 403 } },
    }),
    { now: NOW, serviceAccount: { namespace: "ops", name: "hook" }, sourceReaderRole: "reader" },
  );
  const [ready] = status.conditions;
  assert.equal(ready.reason, "SourceNotFound");
  assert.match(
    ready.message,
    /^Secret shop\/gone .*not found; cannot read ConfigMap other\/locked/,
  );
  assert.match(ready.message, /--clusterrole=reader --serviceaccount=ops:hook -n other`$/);
  assert.deepEqual(status.resolvedRefs, [
    { kind: "Secret", namespace: "shop", name: "gone" },
    { kind: "ConfigMap", namespace: "other", name: "locked", key: "bundle.crt" },
  ]);
});

function bundle(name: string, signerName: string | undefined, pem: string) {
  return {
    metadata: { name, resourceVersion: "1" },
    spec: { ...(signerName ? { signerName } : {}), trustBundle: pem },
  };
}

const SIGNER = "cacerts.csi.cert-manager.io/spire-example.org";
const BY_NAME = {
  apiGroup: "certificates.k8s.io",
  kind: "ClusterTrustBundle",
  name: "cacerts.csi.cert-manager.io:spire-example.org:bundle",
};
const BY_SIGNER = {
  apiGroup: "certificates.k8s.io",
  kind: "ClusterTrustBundle",
  signerName: SIGNER,
  labelSelector: { matchLabels: { tier: "prod" } },
};

Deno.test("status: a ClusterTrustBundle ref by name counts its CAs and names the bundle", async () => {
  const watch = bundleWatch({
    kind: "ClusterTrustBundle",
    name: BY_NAME.name,
    signerName: undefined,
    labelSelector: undefined,
    index: 0,
  });
  assert.deepEqual(watch, { kind: "ClusterTrustBundle", namespace: "", name: BY_NAME.name });
  const { status, recheckAt } = await computeClassStatus(
    cls([BY_NAME]),
    lookupFrom({
      [objectKey(watch)]: {
        object: bundle(BY_NAME.name, SIGNER, pki.rootA.pem + pki.rootB.pem + pki.expired.pem),
      },
    }),
    { now: NOW },
  );
  const [ready] = status.conditions;
  assert.equal(ready.status, "True");
  assert.equal(ready.reason, "Resolved");
  assert.match(
    ready.message,
    /^2 CA certificates from ClusterTrustBundle cacerts\.csi\.cert-manager\.io:spire-example\.org:bundle; earliest NotAfter /,
  );
  assert.equal(status.certificates, 2);
  assert.deepEqual(status.fingerprints, [sha(pki.rootA), sha(pki.rootB)].sort());
  assert.deepEqual(status.resolvedRefs, [{
    kind: "ClusterTrustBundle",
    name: BY_NAME.name,
    bundles: [BY_NAME.name],
    certificates: 2,
  }]);
  assert.equal(recheckAt?.getTime(), pki.at(5).getTime());
});

Deno.test("status: a ClusterTrustBundle ref by signer reads every matching bundle", async () => {
  const watch = bundleWatch({
    kind: "ClusterTrustBundle",
    name: undefined,
    signerName: SIGNER,
    labelSelector: "tier=prod",
    index: 0,
  });
  assert.deepEqual(watch.selector, {
    fieldSelector: `spec.signerName=${SIGNER}`,
    labelSelector: "tier=prod",
  });
  const list = {
    kind: "List",
    items: [
      bundle("cacerts.csi.cert-manager.io:spire-example.org:b", SIGNER, pki.rootB.pem),
      bundle("cacerts.csi.cert-manager.io:spire-example.org:a", SIGNER, pki.rootA.pem),
    ],
  };
  const { status } = await computeClassStatus(
    cls([BY_SIGNER, { kind: "Secret", namespace: "spire", name: "bundle", key: "ca.crt" }]),
    lookupFrom({
      [objectKey(watch)]: { object: list },
      "Secret/spire/bundle": { object: secret({ "ca.crt": pki.rootA.pem }) },
    }),
    { now: NOW },
  );
  const [ready] = status.conditions;
  assert.equal(ready.status, "True", ready.message);
  assert.equal(status.certificates, 2, "rootA from both refs counts once");
  assert.match(
    ready.message,
    /from ClusterTrustBundles of signer cacerts\.csi\.cert-manager\.io\/spire-example\.org matching labels "tier=prod" \(cacerts\.csi\.cert-manager\.io:spire-example\.org:a, cacerts\.csi\.cert-manager\.io:spire-example\.org:b\), Secret spire\/bundle key ca\.crt;/,
  );
  assert.deepEqual(status.resolvedRefs?.[0], {
    kind: "ClusterTrustBundle",
    signerName: SIGNER,
    labelSelector: "tier=prod",
    bundles: [
      "cacerts.csi.cert-manager.io:spire-example.org:a",
      "cacerts.csi.cert-manager.io:spire-example.org:b",
    ],
    certificates: 2,
  });
});

Deno.test("status: a missing bundle, no bundle of the signer, forbidden and expired-only", async () => {
  const byName = objectKey(bundleWatch({
    kind: "ClusterTrustBundle",
    name: BY_NAME.name,
    signerName: undefined,
    labelSelector: undefined,
    index: 0,
  }));
  const bySigner = objectKey(bundleWatch({
    kind: "ClusterTrustBundle",
    name: undefined,
    signerName: SIGNER,
    labelSelector: "tier=prod",
    index: 0,
  }));
  const cases: [unknown, string, SourceState, string, RegExp][] = [
    [
      BY_NAME,
      byName,
      { object: null },
      "SourceNotFound",
      /^ClusterTrustBundle cacerts\.csi\.cert-manager\.io:spire-example\.org:bundle \(from CAProviderClass shop\/trust\) not found$/,
    ],
    [
      BY_SIGNER,
      bySigner,
      { object: { kind: "List", items: [] } },
      "SourceNotFound",
      /no ClusterTrustBundle has spec\.signerName cacerts\.csi\.cert-manager\.io\/spire-example\.org and labels matching "tier=prod"; create one, or fix spec\.refs\[0\]$/,
    ],
    [
      BY_SIGNER,
      bySigner,
      { object: null, error: Object.assign(new Error("forbidden"), { code: 403 }) },
      "Forbidden",
      /^cannot read ClusterTrustBundles of signer .*: ServiceAccount spire-cacerts\/spire-cacerts-webhook may not get, list and watch clustertrustbundles \(certificates\.k8s\.io\); grant them in its ClusterRole \(manifests\/webhook\/rbac\.yaml/,
    ],
    [
      BY_NAME,
      byName,
      { object: null, error: Object.assign(new Error("boom"), { code: 503 }) },
      "SourceUnreadable",
      /^cannot read ClusterTrustBundle \S+ \(from CAProviderClass shop\/trust\): HTTP 503; retrying$/,
    ],
    [
      BY_NAME,
      byName,
      { object: bundle(BY_NAME.name, SIGNER, pki.expired.pem) },
      "NoUsableCA",
      /^CAProviderClass shop\/trust: no usable CA certificate; ClusterTrustBundle \S+ holds no usable CA \(dropped expired CN=Old/,
    ],
  ];
  for (const [ref, key, state, reason, message] of cases) {
    const { status } = await computeClassStatus(cls([ref]), lookupFrom({ [key]: state }), {
      now: NOW,
    });
    const [ready] = status.conditions;
    assert.equal(ready.status, "False", reason);
    assert.equal(ready.reason, reason);
    assert.match(ready.message, message);
    assert.equal(status.certificates, 0);
    assert.equal(status.resolvedRefs?.[0].kind, "ClusterTrustBundle");
  }
  assert.equal(
    forbiddenBundleMessage(
      {
        kind: "ClusterTrustBundle",
        name: "x",
        signerName: undefined,
        labelSelector: undefined,
        index: 0,
      },
      { namespace: "ops", name: "hook" },
    ),
    "cannot read ClusterTrustBundle x: ServiceAccount ops/hook may not get, list and watch " +
      "clustertrustbundles (certificates.k8s.io); grant them in its ClusterRole " +
      "(manifests/webhook/rbac.yaml, ClusterRole spire-cacerts-webhook)",
  );
});

Deno.test("conditions keep lastTransitionTime while the status stays, and move on a transition", () => {
  const stored = {
    conditions: [
      { type: "Other", status: "True", lastTransitionTime: "2020-01-01T00:00:00Z" },
      {
        type: "Ready",
        status: "False",
        reason: "SourceNotFound",
        lastTransitionTime: "2029-01-01T00:00:00Z",
      },
    ],
  };
  const base = { type: "Ready" as const, observedGeneration: 1, reason: "KeyNotFound" as const };
  // Same status, other reason and message: the transition time stays.
  assert.equal(
    nextReadyCondition(stored, { ...base, status: "False", message: "m2" }, NOW).lastTransitionTime,
    "2029-01-01T00:00:00Z",
  );
  assert.equal(
    nextReadyCondition(stored, { ...base, status: "True", reason: "Resolved", message: "ok" }, NOW)
      .lastTransitionTime,
    "2030-06-01T12:00:00Z",
  );
  assert.equal(
    nextReadyCondition(undefined, { ...base, status: "True", message: "ok" }, NOW)
      .lastTransitionTime,
    "2030-06-01T12:00:00Z",
  );
});

Deno.test("statusDiffers compares only the fields this writer owns", async () => {
  const { status } = await computeClassStatus(
    cls([{ kind: "Secret", name: "s" }]),
    lookupFrom({ "Secret/shop/s": { object: secret({ "ca.crt": pki.rootA.pem }) } }),
    { now: NOW },
  );
  const stored = structuredClone(status) as unknown as Record<string, unknown>;
  assert.equal(statusDiffers(stored, status), false);
  // Another owner's condition and field do not count.
  (stored.conditions as unknown[]).unshift({ type: "Synced", status: "True" });
  stored.extra = 1;
  assert.equal(statusDiffers(stored, status), false);
  assert.equal(statusDiffers({ ...stored, certificates: 3 }, status), true);
  assert.equal(statusDiffers({ ...stored, earliestNotAfter: undefined }, status), true);
  assert.equal(statusDiffers(undefined, status), true);
});

Deno.test("forbiddenMessage names the namespace and the exact command", () => {
  assert.equal(
    forbiddenMessage({ kind: "ConfigMap", namespace: "team-a", name: "roots" }),
    "cannot read ConfigMap team-a/roots: ServiceAccount spire-cacerts/spire-cacerts-webhook may " +
      'not read Secrets and ConfigMaps in namespace "team-a" (no RoleBinding to ClusterRole ' +
      "spire-cacerts-source-reader there); grant it with `kubectl create rolebinding " +
      "spire-cacerts-source-reader --clusterrole=spire-cacerts-source-reader " +
      "--serviceaccount=spire-cacerts:spire-cacerts-webhook -n team-a`",
  );
});

// ---- The controller with fakes: a shared "API server" holding classes and sources. ----

class FakeCluster {
  classes = new Map<string, ClassObject>();
  sources = new Map<string, SourceState>();
  writes: { replica: string; class: string; status: ClassStatus }[] = [];
  #rv = 100;
  #feeds = new Set<{ upsert(c: ClassObject): void; remove(c: ClassObject): void }>();
  #watchers = new Set<FakeSources>();

  putClass(c: ClassObject): void {
    const stored = structuredClone({
      ...c,
      metadata: { ...c.metadata, resourceVersion: String(++this.#rv) },
    });
    const key = `${c.metadata!.namespace}/${c.metadata!.name}`;
    this.classes.set(key, stored);
    // Informers deliver asynchronously, to the watches open at the time of the change.
    const feeds = [...this.#feeds];
    setTimeout(() => feeds.forEach((f) => f.upsert(structuredClone(stored))), 0);
  }

  deleteClass(key: string): void {
    const c = this.classes.get(key)!;
    this.classes.delete(key);
    const feeds = [...this.#feeds];
    setTimeout(() => feeds.forEach((f) => f.remove(c)), 0);
  }

  /** Changes a source; watchers in `lagging` do not hear of it (until they read it). */
  setSource(key: string, state: SourceState, lagging: FakeSources[] = []): void {
    this.sources.set(key, state);
    for (const w of this.#watchers) {
      if (w.refs.has(key) && !lagging.includes(w)) {
        w.view.set(key, state);
        w.onChange(key);
      }
    }
  }

  feed(): ClassFeed {
    const feeds = this.#feeds;
    const classes = this.classes;
    let handlers: { upsert(c: ClassObject): void; remove(c: ClassObject): void } | undefined;
    return {
      start(h) {
        handlers = h;
        feeds.add(h);
        for (const c of classes.values()) h.upsert(structuredClone(c));
        return Promise.resolve();
      },
      stop() {
        if (handlers) feeds.delete(handlers);
        return Promise.resolve();
      },
    };
  }

  watcher(onChange: (key: string) => void): FakeSources {
    const w = new FakeSources(this, onChange);
    this.#watchers.add(w);
    return w;
  }

  writer(replica: string) {
    return {
      write: (name: { namespace: string; name: string }, status: ClassStatus) => {
        const key = `${name.namespace}/${name.name}`;
        const c = this.classes.get(key);
        if (!c) return Promise.reject(Object.assign(new Error("not found"), { code: 404 }));
        this.writes.push({ replica, class: key, status: structuredClone(status) });
        this.putClass({ ...c, status });
        return Promise.resolve();
      },
    };
  }
}

class FakeSources implements SourceFeed {
  refs = new Map<string, number>();
  /** What this watcher has heard: the cluster's state as of its last event or read. */
  view = new Map<string, SourceState>();
  refreshes = 0;
  constructor(readonly cluster: FakeCluster, readonly onChange: (key: string) => void) {}
  acquire(o: WatchedObject): Promise<void> {
    const key = objectKey(o);
    if (!this.refs.has(key)) this.view.set(key, this.cluster.sources.get(key) ?? { object: null });
    this.refs.set(key, (this.refs.get(key) ?? 0) + 1);
    return Promise.resolve();
  }
  release(o: WatchedObject): void {
    const n = (this.refs.get(objectKey(o)) ?? 0) - 1;
    if (n <= 0) {
      this.refs.delete(objectKey(o));
      this.view.delete(objectKey(o));
    } else this.refs.set(objectKey(o), n);
  }
  get(o: WatchedObject) {
    if (!this.refs.has(objectKey(o))) return undefined;
    return this.view.get(objectKey(o))?.object ?? null;
  }
  error(o: WatchedObject): unknown {
    return this.view.get(objectKey(o))?.error;
  }
  refresh(o: WatchedObject): Promise<void> {
    const key = objectKey(o);
    if (!this.refs.has(key)) return Promise.resolve();
    this.refreshes++;
    const fresh = this.cluster.sources.get(key) ?? { object: null };
    if (fresh !== this.view.get(key)) {
      this.view.set(key, fresh);
      this.onChange(key);
    }
    return Promise.resolve();
  }
  stop(): void {
    this.refs.clear();
    this.view.clear();
  }
}

async function settle(...controllers: ClassStatusController[]): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await delay(5);
    await Promise.all(controllers.map((c) => c.idle()));
  }
}

Deno.test("controller: a deleted source turns Ready False and back, two replicas converge without churn", async () => {
  const cluster = new FakeCluster();
  cluster.setSource("Secret/spire/bundle", { object: secret({ "ca.crt": pki.rootA.pem }) });
  cluster.putClass(cls([{ kind: "Secret", namespace: "spire", name: "bundle", key: "ca.crt" }]));
  let clock = NOW.getTime();
  const metrics = new Registry();
  const sources: FakeSources[] = [];
  const make = (replica: string, registry?: Registry) =>
    new ClassStatusController({
      classes: cluster.feed(),
      sources: (onChange) => {
        const w = cluster.watcher(onChange);
        sources.push(w);
        return w;
      },
      writer: cluster.writer(replica),
      now: () => new Date(clock),
      metrics: registry,
    });
  const a = make("a", metrics);
  const b = make("b");
  await a.start();
  await b.start();
  await settle(a, b);
  const stored = () => cluster.classes.get("shop/trust")!.status as ClassStatus;
  assert.equal(stored().conditions[0].status, "True");
  assert.equal(stored().certificates, 1);
  assert.ok(cluster.writes.length <= 2, `first status written at most once per replica`);
  assert.deepEqual(sources.map((s) => [...s.refs.keys()]), [["Secret/spire/bundle"], [
    "Secret/spire/bundle",
  ]]);
  assert.equal(metrics.value("spire_cacerts_webhook_caproviderclasses", { ready: "true" }), 1);

  // Nothing changed: events and resyncs write nothing.
  const quiet = cluster.writes.length;
  cluster.setSource("Secret/spire/bundle", { object: secret({ "ca.crt": pki.rootA.pem }) });
  await settle(a, b);
  assert.equal(cluster.writes.length, quiet);

  clock += 60_000;
  cluster.setSource("Secret/spire/bundle", { object: null });
  await settle(a, b);
  assert.equal(stored().conditions[0].status, "False");
  assert.equal(stored().conditions[0].reason, "SourceNotFound");
  assert.match(stored().conditions[0].message, /Secret spire\/bundle .*not found/);
  assert.equal(stored().conditions[0].lastTransitionTime, rfc3339(new Date(clock)));
  const transition = cluster.writes.length;
  assert.ok(transition - quiet <= 2, `a transition costs at most one write per replica`);
  assert.equal(metrics.value("spire_cacerts_webhook_caproviderclasses", { ready: "false" }), 1);

  // Later events with the same outcome keep the transition time and write nothing.
  clock += 60_000;
  cluster.setSource("Secret/spire/bundle", { object: null });
  await settle(a, b);
  assert.equal(cluster.writes.length, transition);

  clock += 60_000;
  cluster.setSource("Secret/spire/bundle", {
    object: secret({ "ca.crt": pki.rootA.pem + pki.rootB.pem }),
  });
  await settle(a, b);
  assert.equal(stored().conditions[0].status, "True");
  assert.equal(stored().certificates, 2);
  assert.equal(stored().conditions[0].lastTransitionTime, rfc3339(new Date(clock)));

  // Deleting the class drops its watches.
  cluster.deleteClass("shop/trust");
  await settle(a, b);
  assert.deepEqual(sources.map((s) => s.refs.size), [0, 0]);
  await a.stop();
  await b.stop();
});

Deno.test("controller: a Forbidden source recovers once it can be read, a spec change moves the watch", async () => {
  const cluster = new FakeCluster();
  const forbidden = { object: null, error: Object.assign(new Error("forbidden"), { code: 403 }) };
  cluster.setSource("ConfigMap/team/roots", forbidden);
  cluster.setSource("Secret/shop/mine", { object: secret({ "ca.crt": pki.rootB.pem }) });
  cluster.putClass(cls([{ kind: "ConfigMap", namespace: "team", name: "roots" }]));
  let watcher: FakeSources | undefined;
  const c = new ClassStatusController({
    classes: cluster.feed(),
    sources: (onChange) => watcher = cluster.watcher(onChange),
    writer: cluster.writer("a"),
    now: () => NOW,
  });
  await c.start();
  await settle(c);
  const stored = () => cluster.classes.get("shop/trust")!.status as ClassStatus;
  assert.equal(stored().conditions[0].reason, "Forbidden");
  assert.match(stored().conditions[0].message, /-n team`$/);

  cluster.setSource("ConfigMap/team/roots", { object: { data: { "ca.crt": pki.rootA.pem } } });
  await settle(c);
  assert.equal(stored().conditions[0].reason, "Resolved");
  assert.equal(stored().resolvedRefs?.[0].keySource, "Default");

  const current = cluster.classes.get("shop/trust")!;
  cluster.putClass({
    ...current,
    metadata: { ...current.metadata, generation: 4 },
    spec: { refs: [{ kind: "Secret", name: "mine" }] },
  });
  await settle(c);
  assert.equal(stored().observedGeneration, 4);
  assert.equal(stored().conditions[0].observedGeneration, 4);
  assert.deepEqual(stored().fingerprints, [sha(pki.rootB)]);
  assert.deepEqual([...watcher!.refs.keys()], ["Secret/shop/mine"]);
  await c.stop();
});

Deno.test("controller: a replica whose watch lags reads afresh instead of writing its old view back", async () => {
  const cluster = new FakeCluster();
  cluster.setSource("Secret/shop/s", { object: secret({ "ca.crt": pki.rootA.pem }) });
  cluster.putClass(cls([{ kind: "Secret", name: "s" }]));
  const watchers: FakeSources[] = [];
  const make = (replica: string) =>
    new ClassStatusController({
      classes: cluster.feed(),
      sources: (onChange) => {
        const w = cluster.watcher(onChange);
        watchers.push(w);
        return w;
      },
      writer: cluster.writer(replica),
      now: () => NOW,
    });
  const a = make("a");
  const b = make("b");
  await a.start();
  await b.start();
  await settle(a, b);
  const first = cluster.writes.length;
  // Only replica a hears of the deletion; b sees a's status write first.
  cluster.setSource("Secret/shop/s", { object: null }, [watchers[1]]);
  await settle(a, b);
  const after = cluster.writes.slice(first);
  assert.deepEqual(after.map((w) => [w.replica, w.status.conditions[0].status]), [["a", "False"]]);
  assert.ok(watchers[1].refreshes >= 1, "b read the source afresh before disagreeing");
  assert.equal(
    (cluster.classes.get("shop/trust")!.status as ClassStatus).conditions[0].reason,
    "SourceNotFound",
  );
  await a.stop();
  await b.stop();
});

Deno.test("controller: a failed write is retried", async () => {
  const cluster = new FakeCluster();
  cluster.setSource("Secret/shop/s", { object: secret({ "ca.crt": pki.rootA.pem }) });
  cluster.putClass(cls([{ kind: "Secret", name: "s" }]));
  const real = cluster.writer("a");
  let failures = 1;
  const metrics = new Registry();
  const c = new ClassStatusController({
    metrics,
    classes: cluster.feed(),
    sources: (onChange) => cluster.watcher(onChange),
    writer: {
      write: (name, status) =>
        failures-- > 0
          ? Promise.reject(new Error("apiserver unavailable"))
          : real.write(name, status),
    },
    now: () => NOW,
  });
  await c.start();
  await settle(c);
  assert.equal(cluster.classes.get("shop/trust")!.status, undefined);
  const errors = { result: "error" };
  assert.equal(metrics.value("spire_cacerts_webhook_class_status_writes_total", errors), 1);
  await delay(1100);
  await settle(c);
  assert.equal((cluster.classes.get("shop/trust")!.status as ClassStatus).certificates, 1);
  await c.stop();
});

const CM = { apiGroup: "cert-manager.io" };

function caIssuer(secretName: string, resourceVersion = "1"): Record<string, unknown> {
  return { metadata: { resourceVersion }, spec: { ca: { secretName } } };
}

Deno.test("status: a CA Issuer and a ClusterIssuer resolve to their Secrets, named with the key read", async () => {
  const { status } = await computeClassStatus(
    cls([
      { ...CM, kind: "Issuer", name: "team-ca" },
      { ...CM, kind: "ClusterIssuer", name: "root" },
    ]),
    lookupFrom({
      "Issuer/shop/team-ca": { object: caIssuer("team-ca-key") },
      "Secret/shop/team-ca-key": {
        object: secret({ "tls.crt": pki.rootA.pem }, "kubernetes.io/tls"),
      },
      "ClusterIssuer//root": { object: caIssuer("root-ca") },
      "Secret/certs-system/root-ca": { object: secret({ "ca.crt": pki.rootB.pem }) },
    }),
    { now: NOW, clusterResourceNamespace: "certs-system" },
  );
  assert.equal(status.conditions[0].status, "True", status.conditions[0].message);
  assert.equal(status.certificates, 2);
  assert.deepEqual(status.resolvedRefs, [
    {
      kind: "Issuer",
      namespace: "shop",
      name: "team-ca",
      secret: { namespace: "shop", name: "team-ca-key" },
      key: "tls.crt",
      keySource: "Fallback",
      certificates: 1,
    },
    {
      kind: "ClusterIssuer",
      name: "root",
      secret: { namespace: "certs-system", name: "root-ca" },
      key: "ca.crt",
      keySource: "Default",
      certificates: 1,
    },
  ]);
  assert.match(
    status.conditions[0].message,
    /^2 CA certificates from Issuer shop\/team-ca \(Secret shop\/team-ca-key key tls\.crt \(ref without key; the object has no ca\.crt\)\), ClusterIssuer root \(Secret certs-system\/root-ca key ca\.crt \(ref without key\)\)/,
  );
});

Deno.test("status: an ACME issuer is InvalidRef naming it; missing and Forbidden issuers and Secrets", async () => {
  const forbidden = { object: null, error: Object.assign(new Error("no"), { code: 403 }) };
  const ready = async (refs: unknown[], objects: Record<string, SourceState>) =>
    (await computeClassStatus(cls(refs), lookupFrom(objects), { now: NOW })).status
      .conditions[0];
  const acme = await ready([{ ...CM, kind: "ClusterIssuer", name: "letsencrypt" }], {
    "ClusterIssuer//letsencrypt": { object: { spec: { acme: { server: "https://acme" } } } },
  });
  assert.equal(acme.status, "False");
  assert.equal(acme.reason, "InvalidRef");
  assert.match(
    acme.message,
    /^ClusterIssuer letsencrypt \(from CAProviderClass shop\/trust\) is an acme issuer; only CA issuers \(spec\.ca\.secretName\) can be read/,
  );
  const missing = await ready([{ ...CM, kind: "Issuer", name: "gone" }], {});
  assert.equal(missing.reason, "SourceNotFound");
  assert.match(
    missing.message,
    /^Issuer shop\/gone \(from CAProviderClass shop\/trust\) not found/,
  );
  const noSecret = await ready([{ ...CM, kind: "ClusterIssuer", name: "root" }], {
    "ClusterIssuer//root": { object: caIssuer("root-ca") },
  });
  assert.equal(noSecret.reason, "SourceNotFound");
  assert.match(
    noSecret.message,
    /^Secret cert-manager\/root-ca \(from CAProviderClass shop\/trust via ClusterIssuer root\) not found/,
  );
  const secretForbidden = await ready([{ ...CM, kind: "ClusterIssuer", name: "root" }], {
    "ClusterIssuer//root": { object: caIssuer("root-ca") },
    "Secret/cert-manager/root-ca": forbidden,
  });
  assert.equal(secretForbidden.reason, "Forbidden");
  assert.match(secretForbidden.message, /in namespace "cert-manager"/);
  assert.match(
    secretForbidden.message,
    /`kubectl create rolebinding spire-cacerts-source-reader --clusterrole=spire-cacerts-source-reader --serviceaccount=spire-cacerts:spire-cacerts-webhook -n cert-manager` \(the CA Secret of ClusterIssuer root\)$/,
  );
  const notServed = await ready([{ ...CM, kind: "ClusterIssuer", name: "root" }], {
    "ClusterIssuer//root": { object: null, error: Object.assign(new Error("nf"), { code: 404 }) },
  });
  assert.equal(notServed.reason, "SourceUnreadable");
  assert.match(
    notServed.message,
    /the API server does not serve clusterissuers\.cert-manager\.io\/v1 \(HTTP 404\); install cert-manager/,
  );
  const issuerForbidden = await ready([{ ...CM, kind: "Issuer", name: "x" }], {
    "Issuer/shop/x": forbidden,
  });
  assert.equal(issuerForbidden.reason, "Forbidden");
  assert.match(
    issuerForbidden.message,
    /^cannot read Issuer shop\/x: .*may not get, list and watch issuers and clusterissuers \(cert-manager\.io\)/,
  );
});

Deno.test("controller: an issuer's Secret is followed, and a new secretName moves the watch", async () => {
  const cluster = new FakeCluster();
  cluster.setSource("Issuer/shop/team-ca", { object: caIssuer("key-1") });
  cluster.setSource("Secret/shop/key-1", { object: secret({ "ca.crt": pki.rootA.pem }) });
  cluster.setSource("Secret/shop/key-2", { object: secret({ "ca.crt": pki.rootB.pem }) });
  cluster.putClass(cls([{ ...CM, kind: "Issuer", name: "team-ca" }]));
  let watcher: FakeSources | undefined;
  const c = new ClassStatusController({
    classes: cluster.feed(),
    sources: (onChange) => watcher = cluster.watcher(onChange),
    writer: cluster.writer("a"),
    now: () => NOW,
  });
  await c.start();
  await settle(c);
  const stored = () => cluster.classes.get("shop/trust")!.status as ClassStatus;
  assert.equal(stored().conditions[0].reason, "Resolved", stored().conditions[0].message);
  assert.deepEqual(stored().fingerprints, [sha(pki.rootA)]);
  assert.deepEqual([...watcher!.refs.keys()].sort(), ["Issuer/shop/team-ca", "Secret/shop/key-1"]);

  // The Secret changes: the status follows.
  cluster.setSource("Secret/shop/key-1", {
    object: secret({ "ca.crt": pki.rootA.pem + pki.rootB.pem }),
  });
  await settle(c);
  assert.equal(stored().certificates, 2);

  // The issuer names another Secret: that one is watched instead, and read.
  cluster.setSource("Issuer/shop/team-ca", { object: caIssuer("key-2", "2") });
  await settle(c);
  assert.deepEqual(stored().fingerprints, [sha(pki.rootB)]);
  assert.deepEqual(stored().resolvedRefs?.[0].secret, { namespace: "shop", name: "key-2" });
  assert.deepEqual([...watcher!.refs.keys()].sort(), ["Issuer/shop/team-ca", "Secret/shop/key-2"]);

  // It turns into an ACME issuer: Ready False, and no Secret is watched.
  cluster.setSource("Issuer/shop/team-ca", {
    object: { metadata: { resourceVersion: "3" }, spec: { acme: {} } },
  });
  await settle(c);
  assert.equal(stored().conditions[0].reason, "InvalidRef");
  assert.deepEqual([...watcher!.refs.keys()], ["Issuer/shop/team-ca"]);
  await c.stop();
});
