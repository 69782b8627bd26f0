/**
 * Fault: a corpus of bad inputs, one named step each. PEM sources go through the trust-store
 * engine into a directory holding a good store; AdmissionReviews go to the webhook app's fetch
 * handler; Secret/ConfigMap contents reach a published volume through the real apiserver; CSI
 * requests go to the driver over gRPC. Each gets its clear, typed error (error class / HTTP status
 * and reason / gRPC code and message) and nothing is written: the existing store is byte-for-byte
 * unchanged, no target directory, mount or volume record appears, no admission response is built.
 */
import assert from "node:assert/strict";
import { DRIVER_NAME, INJECT_LABEL } from "../../api/mod.ts";
import { X509Certificate } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { join } from "node:path";
import {
  AtomicWriter,
  buildTrustSet,
  EmptyTrustSetError,
  parseOsFamily,
  PemError,
  renderTrustStore,
} from "../../trust_store/mod.ts";
import { type DriverProcess, startDriverProcess } from "../harness/driver_process.ts";
import { type AdmissionEvent, createApp } from "../../webhook/app.ts";
import { DevCa } from "../../x509/mod.ts";
import { x509 } from "../../x509/mod.ts";
import { needsTools, waitFor } from "../harness/mod.ts";
import {
  apply,
  b64,
  caProviderClass,
  coreApi,
  CsiCallError,
  CsiClient,
  isMountPoint,
  makeGenerations,
  NS,
  type PublishFields,
  publishRequest,
  putSecret,
  readView,
  setupCluster,
  snapshot,
  startScratchApiServer,
} from "./helpers.ts";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const DAY = 86_400_000;

/** A self-signed or issued certificate with chosen validity and CA-ness, as PEM. */
async function certificate(options: {
  name: string;
  ca: boolean;
  notBefore: Date;
  notAfter: Date;
  issuer?: { name: string; keys: CryptoKeyPair };
}): Promise<{ pem: string; keys: CryptoKeyPair }> {
  const keys = await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
  const extensions = [new x509.BasicConstraintsExtension(options.ca, undefined, true)];
  const cert = options.issuer
    ? await x509.X509CertificateGenerator.create({
      serialNumber: "01" + crypto.randomUUID().replaceAll("-", "").slice(0, 14),
      subject: options.name,
      issuer: options.issuer.name,
      notBefore: options.notBefore,
      notAfter: options.notAfter,
      publicKey: keys.publicKey,
      signingKey: options.issuer.keys.privateKey,
      signingAlgorithm: ALG,
      extensions,
    })
    : await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: "01" + crypto.randomUUID().replaceAll("-", "").slice(0, 14),
      name: options.name,
      notBefore: options.notBefore,
      notAfter: options.notAfter,
      keys,
      signingAlgorithm: ALG,
      extensions,
    });
  return { pem: cert.toString("pem") + "\n", keys };
}

interface Pki {
  good: string;
  expiredCa: string;
  futureCa: string;
  leaf: string;
  intermediate: string;
  keyPem: string;
  csrPem: string;
}

async function makePki(): Promise<Pki> {
  const now = Date.now();
  const root = await certificate({
    name: "CN=bad-input root",
    ca: true,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + DAY),
  });
  const ca = await DevCa.create(99);
  const leaf = await ca.issue({ spiffeId: "spiffe://example.org/leaf", ttlMs: DAY });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=please sign me",
    keys: root.keys,
    signingAlgorithm: ALG,
  });
  return {
    good: root.pem,
    expiredCa: (await certificate({
      name: "CN=expired CA",
      ca: true,
      notBefore: new Date(now - 10 * DAY),
      notAfter: new Date(now - DAY),
    })).pem,
    futureCa: (await certificate({
      name: "CN=future CA",
      ca: true,
      notBefore: new Date(now + DAY),
      notAfter: new Date(now + 10 * DAY),
    })).pem,
    leaf: leaf.certPem,
    intermediate: (await certificate({
      name: "CN=intermediate CA",
      ca: true,
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + DAY),
      issuer: { name: "CN=bad-input root", keys: root.keys },
    })).pem,
    keyPem: leaf.keyPem,
    csrPem: csr.toString("pem") + "\n",
  };
}

const BEGIN = "-----BEGIN CERTIFICATE-----";
const END = "-----END CERTIFICATE-----";

/** PEM sources the engine must refuse: [name, text, error class, message]. */
function pemCorpus(
  pki: Pki,
): [string, string, typeof PemError | typeof EmptyTrustSetError, RegExp][] {
  const body = pki.good.split("\n").filter((l) => l && !l.startsWith("-----"));
  return [
    ["garbage text", "hello, world\n", PemError, /contains no CERTIFICATE block/],
    ["empty source", "", PemError, /contains no CERTIFICATE block/],
    [
      "truncated: no END marker",
      `${BEGIN}\n${body.slice(0, 2).join("\n")}\n`,
      PemError,
      /block 1 \(line 1\) is not terminated/,
    ],
    [
      "truncated base64 body",
      `${BEGIN}\n${body.join("").slice(0, 101)}\n${END}\n`,
      PemError,
      /block 1 \(line 1\): invalid base64 body/,
    ],
    [
      "base64 with bad characters",
      `${BEGIN}\n${body[0].slice(0, 60)}!@#$\n${END}\n`,
      PemError,
      /invalid base64 body/,
    ],
    [
      "a private key",
      pki.keyPem,
      PemError,
      /is a PRIVATE KEY, only CERTIFICATE blocks are accepted; private keys are never shipped/,
    ],
    [
      "a good CA followed by its private key",
      pki.good + pki.keyPem,
      PemError,
      /block 2 .* is a PRIVATE KEY.*never shipped/,
    ],
    [
      "a CSR",
      pki.csrPem,
      PemError,
      /is a CERTIFICATE REQUEST, only CERTIFICATE blocks are accepted/,
    ],
    [
      "encrypted PEM headers",
      `${BEGIN}\nProc-Type: 4,ENCRYPTED\n${body.join("\n")}\n${END}\n`,
      PemError,
      /has PEM headers \(line 2\); headers are not accepted/,
    ],
    ["END without BEGIN", `${END}\n`, PemError, /line 1: END marker without a BEGIN/],
    [
      "base64 that is not a certificate",
      `${BEGIN}\n${btoa("definitely not DER, just text!!")}\n${END}\n`,
      PemError,
      /block 1 is not a valid certificate/,
    ],
    [
      "only an expired CA",
      pki.expiredCa,
      EmptyTrustSetError,
      /refusing to write an empty trust store \(dropped expired CN=expired CA/,
    ],
    [
      "only a not-yet-valid CA",
      pki.futureCa,
      EmptyTrustSetError,
      /dropped not yet valid CN=future CA/,
    ],
    ["only a leaf (not a CA)", pki.leaf, EmptyTrustSetError, /dropped non-CA /],
    [
      "only an intermediate CA",
      pki.intermediate,
      EmptyTrustSetError,
      /dropped intermediate CN=intermediate CA/,
    ],
  ];
}

const LIMIT = 64 * 1024;

function review(overrides: Record<string, unknown> = {}, request: unknown = undefined) {
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: request ?? {
      uid: "u-1",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      object: {
        metadata: { name: "p", labels: { [INJECT_LABEL]: "true" } },
        spec: { containers: [{ name: "c", image: "i" }] },
      },
    },
    ...overrides,
  });
}

/** AdmissionReviews: [name, request init, HTTP status, error message]. */
function admissionCorpus(): [string, RequestInit, number, RegExp][] {
  const json = { "content-type": "application/json" };
  const post = (body: BodyInit, headers: HeadersInit = json): RequestInit => ({
    method: "POST",
    body,
    headers,
  });
  const huge = "x".repeat(LIMIT + 1);
  return [
    ["malformed JSON", post('{"apiVersion": '), 400, /^body is not JSON: /],
    ["a JSON array", post("[]"), 400, /^body is not a JSON object$/],
    ["a JSON number", post("42"), 400, /^body is not a JSON object$/],
    ["JSON null", post("null"), 400, /^body is not a JSON object$/],
    [
      "wrong apiVersion (v1beta1)",
      post(review({ apiVersion: "admission.k8s.io/v1beta1" })),
      400,
      /^apiVersion must be admission.k8s.io\/v1, got "admission.k8s.io\/v1beta1"$/,
    ],
    [
      "missing apiVersion",
      post(review({ apiVersion: undefined })),
      400,
      /^apiVersion must be admission.k8s.io\/v1, got null$/,
    ],
    [
      "wrong kind",
      post(review({ kind: "Pod" })),
      400,
      /^kind must be AdmissionReview, got "Pod"$/,
    ],
    [
      "missing request",
      post(review({ request: undefined })),
      400,
      /^AdmissionReview has no request$/,
    ],
    ["request is an array", post(review({ request: [] })), 400, /^AdmissionReview has no request$/],
    [
      "request without uid",
      post(review({}, { kind: { version: "v1", kind: "Pod" } })),
      400,
      /^AdmissionReview request has no uid$/,
    ],
    ["empty uid", post(review({}, { uid: "" })), 400, /^AdmissionReview request has no uid$/],
    ["numeric uid", post(review({}, { uid: 7 })), 400, /^AdmissionReview request has no uid$/],
    [
      "huge body with Content-Length",
      post(huge, { ...json, "content-length": String(huge.length) }),
      413,
      new RegExp(`^body of ${huge.length} bytes exceeds ${LIMIT} bytes$`),
    ],
    [
      "huge streamed body without Content-Length",
      post(
        new ReadableStream({
          start(c) {
            for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode("y".repeat(8192)));
            c.close();
          },
        }),
      ),
      413,
      new RegExp(`^body exceeds ${LIMIT} bytes$`),
    ],
    [
      "wrong content type",
      post(review(), { "content-type": "text/plain" }),
      415,
      /^content type must be application\/json, got "text\/plain"$/,
    ],
    [
      "missing content type",
      { method: "POST", body: new TextEncoder().encode(review()) },
      415,
      /^content type must be application\/json, got ""$/,
    ],
    ["empty body", post(""), 400, /^empty body$/],
    [
      "invalid UTF-8",
      post(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])),
      400,
      /^body is not valid UTF-8$/,
    ],
  ];
}

Deno.test({
  name: "fault corpus: bad PEM sources and AdmissionReviews get clear errors, nothing is written",
  fn: async (t) => {
    const pki = await makePki();
    const dir = await Deno.makeTempDir({ prefix: "cacerts-fault-corpus-" });
    try {
      const writer = new AtomicWriter(dir, { fsync: false });
      const publishStore = async (text: string) => {
        const set = await buildTrustSet([{ name: "Secret shop/ca key ca.crt", text }]);
        await writer.write(renderTrustStore(parseOsFamily("debian"), set));
      };
      await publishStore(pki.good);
      const good = new X509Certificate(pki.good).fingerprint256;
      for (const [name, text, type, message] of pemCorpus(pki)) {
        await t.step(`PEM source: ${name}`, async () => {
          const before = await snapshot(dir);
          const error = await publishStore(text).then(() => undefined, (e) => e);
          assert.ok(error instanceof type, `expected ${type.name}, got ${error}`);
          assert.match(error.message, message);
          if (error instanceof PemError) {
            assert.equal(error.source, "Secret shop/ca key ca.crt");
            assert.doesNotMatch(error.message, /MII/, "the message never quotes the input");
          }
          assert.deepEqual(await snapshot(dir), before, "the store is untouched");
          const bundle = await Deno.readTextFile(join(dir, "ca-certificates.crt"));
          assert.equal(new X509Certificate(bundle).fingerprint256, good);
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }

    const events: AdmissionEvent[] = [];
    const app = createApp({
      driverName: DRIVER_NAME,
      className: "spire-ca",
      maxBodyBytes: LIMIT,
      onAdmission: (e) => events.push(e),
    });
    for (const [name, init, code, message] of admissionCorpus()) {
      await t.step(`AdmissionReview: ${name}`, async () => {
        const seen = events.length;
        const res = await app.fetch(new Request("http://webhook/mutate", init));
        assert.equal(res.status, code);
        assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
        const body = await res.json();
        assert.deepEqual(Object.keys(body), ["error"], "no AdmissionReview response is built");
        assert.match(body.error, message);
        assert.equal(events.length, seen + 1);
        assert.equal(events.at(-1)!.result, "bad_request");
        assert.equal(events.at(-1)!.message, body.error);
      });
    }
    // The same app still answers a good review.
    const ok = await app.fetch(
      new Request("http://webhook/mutate", {
        method: "POST",
        body: review(),
        headers: { "content-type": "application/json" },
      }),
    );
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).response.patchType, "JSONPatch");
  },
});

/** Secret/ConfigMap contents: [name, kind, data, binaryData, volumeCondition message]. */
type ObjectCase = [
  string,
  "Secret" | "ConfigMap",
  Record<string, string | Uint8Array> | null,
  Record<string, Uint8Array> | undefined,
  RegExp,
];

function objectCorpus(pki: Pki): ObjectCase[] {
  const random = crypto.getRandomValues(new Uint8Array(512));
  return [
    [
      "Secret without the key",
      "Secret",
      { other: pki.good },
      undefined,
      /Secret shop\/src-secret \(from CAProviderClass shop\/from-secret\) has neither key "ca.crt" nor "tls.crt", the keys a ref without key reads; keys present: other\. Add one of them, or set CAProviderClass shop\/from-secret spec\.refs\[0\]\.key/,
    ],
    [
      "Secret with no data",
      "Secret",
      {},
      undefined,
      /has neither key "ca.crt" nor "tls.crt", the keys a ref without key reads; keys present: none\./,
    ],
    [
      "Secret key empty",
      "Secret",
      { "ca.crt": "" },
      undefined,
      /Secret shop\/src-secret key ca.crt: contains no CERTIFICATE block/,
    ],
    [
      "Secret key binary",
      "Secret",
      { "ca.crt": random },
      undefined,
      /key ca.crt: contains no CERTIFICATE block/,
    ],
    [
      "Secret holding a private key",
      "Secret",
      { "ca.crt": pki.keyPem },
      undefined,
      /private keys are never shipped/,
    ],
    [
      "Secret holding a CSR",
      "Secret",
      { "ca.crt": pki.csrPem },
      undefined,
      /is a CERTIFICATE REQUEST/,
    ],
    [
      "Secret holding only an expired CA",
      "Secret",
      { "ca.crt": pki.expiredCa },
      undefined,
      /refusing to write an empty trust store \(dropped expired/,
    ],
    ["Secret holding only a leaf", "Secret", { "ca.crt": pki.leaf }, undefined, /dropped non-CA/],
    [
      "Secret deleted",
      "Secret",
      null,
      undefined,
      /Secret shop\/src-secret \(from CAProviderClass shop\/from-secret\) not found/,
    ],
    [
      "ConfigMap without the key",
      "ConfigMap",
      { other: pki.good },
      undefined,
      /ConfigMap shop\/src-cm \(from CAProviderClass shop\/from-cm\) has no key "bundle.crt"; keys present: other\. Fix CAProviderClass shop\/from-cm spec\.refs\[0\]\.key or add the key$/,
    ],
    [
      "ConfigMap key empty",
      "ConfigMap",
      { "bundle.crt": "" },
      undefined,
      /ConfigMap shop\/src-cm key bundle.crt: contains no CERTIFICATE block/,
    ],
    [
      "ConfigMap binaryData garbage",
      "ConfigMap",
      {},
      { "bundle.crt": random },
      /key bundle.crt: contains no CERTIFICATE block/,
    ],
    [
      "ConfigMap truncated PEM",
      "ConfigMap",
      { "bundle.crt": pki.good.slice(0, 200) },
      undefined,
      /is not terminated/,
    ],
    [
      "ConfigMap deleted",
      "ConfigMap",
      null,
      undefined,
      /ConfigMap shop\/src-cm \(from CAProviderClass shop\/from-cm\) not found/,
    ],
  ];
}

/** CSI requests: [name, request (from a valid one), gRPC code, message, path that must not appear]. */
type CsiCase = [string, (dir: string) => PublishFields, status, RegExp];

function csiCorpus(): CsiCase[] {
  const base = (dir: string, id: string, cls = "from-secret") =>
    publishRequest(`csi-bad-${id}`, join(dir, "pods", `bad-${id}`, "mount"), `bad-${id}`, cls);
  const ctx = (dir: string, id: string, change: Record<string, string | undefined>) => {
    const req = base(dir, id);
    const volumeContext = { ...req.volumeContext, ...change };
    for (const [k, v] of Object.entries(change)) if (v === undefined) delete volumeContext[k];
    return { ...req, volumeContext: volumeContext as Record<string, string> };
  };
  const I = status.INVALID_ARGUMENT;
  return [
    [
      "missing volume_id",
      (d) => ({ ...base(d, "1"), volumeId: "" }),
      I,
      /^volume_id is required \(pod shop\/bad-1\)$/,
    ],
    [
      "missing target_path",
      (d) => ({ ...base(d, "2"), targetPath: "" }),
      I,
      /^target_path is required \(pod shop\/bad-2\)$/,
    ],
    [
      "relative target_path",
      (d) => ({ ...base(d, "3"), targetPath: "pods/bad-3/mount" }),
      I,
      /^target_path "pods\/bad-3\/mount" must be absolute/,
    ],
    [
      "target_path escaping with ..",
      (d) => ({ ...base(d, "4"), targetPath: join(d, "pods") + "/bad-4/../../escaped" }),
      I,
      /target_path ".*\/bad-4\/\.\.\/\.\.\/escaped" must not contain "\.\."/,
    ],
    [
      "target_path with a NUL byte",
      (d) => ({ ...base(d, "5"), targetPath: join(d, "pods", "bad-5\0x") }),
      I,
      /^target_path contains a NUL byte \(pod shop\/bad-5\)$/,
    ],
    [
      "missing volume_capability",
      (d) => ({ ...base(d, "6"), volumeCapability: undefined }),
      I,
      /^volume_capability is required/,
    ],
    [
      "block access",
      (d) => ({
        ...base(d, "7"),
        volumeCapability: { block: {}, accessMode: { mode: "SINGLE_NODE_READER_ONLY" } },
      }),
      I,
      /block access is not supported/,
    ],
    [
      "missing access mode",
      (d) => ({ ...base(d, "8"), volumeCapability: { mount: {} } }),
      I,
      /^volume_capability.access_mode is required/,
    ],
    [
      "writable volume (readonly=false)",
      (d) => ({ ...base(d, "9"), readonly: false }),
      I,
      /^readonly must be true: set readOnly: true on the csi volume in the pod spec \(pod shop\/bad-9\)$/,
    ],
    [
      "not an ephemeral inline volume",
      (d) => ctx(d, "10", { "csi.storage.k8s.io/ephemeral": undefined }),
      I,
      /only ephemeral inline volumes are supported/,
    ],
    [
      "no pod info",
      (d) => ctx(d, "11", { "csi.storage.k8s.io/pod.name": undefined }),
      I,
      /volume_context needs "csi.storage.k8s.io\/pod.namespace" and "csi.storage.k8s.io\/pod.name": set podInfoOnMount/,
    ],
    [
      "unknown OS family",
      (d) => ctx(d, "12", { os: "windows" }),
      I,
      /volumeAttributes.os: unknown OS family "windows"; valid values: debian/,
    ],
    [
      "no caProviderClasses",
      (d) => ctx(d, "13", { caProviderClasses: undefined }),
      I,
      /volumeAttributes.caProviderClasses is required/,
    ],
    [
      "malformed caProviderClasses",
      (d) => ctx(d, "14", { caProviderClasses: "a/b/c" }),
      I,
      /volumeAttributes.caProviderClasses: "a\/b\/c" is neither a name nor namespace\/name/,
    ],
    [
      "invalid class name",
      (d) => ctx(d, "15", { caProviderClasses: "Bad_Name" }),
      I,
      /"Bad_Name" is not a valid object name/,
    ],
    [
      "unknown CAProviderClass",
      (d) => base(d, "16", "nope"),
      status.NOT_FOUND,
      /^CAProviderClass shop\/nope not found \(pod shop\/bad-16\)$/,
    ],
    [
      "class in a namespace not allowed",
      (d) => base(d, "17", "kube-system/any"),
      status.PERMISSION_DENIED,
      /CAProviderClass kube-system\/any is in another namespace .*--allowed-ref-namespaces/,
    ],
    [
      "class whose Secret is missing",
      (d) => base(d, "18", "to-missing"),
      status.NOT_FOUND,
      /Secret shop\/missing \(from CAProviderClass shop\/to-missing\) not found/,
    ],
    [
      "class whose Secret holds garbage",
      (d) => base(d, "19", "to-garbage"),
      status.FAILED_PRECONDITION,
      /Secret shop\/garbage key ca.crt: contains no CERTIFICATE block \(pod shop\/bad-19\)$/,
    ],
    [
      "published volume id at another target",
      (d) => ({ ...base(d, "20"), volumeId: "csi-secret-vol" }),
      status.ALREADY_EXISTS,
      /volume csi-secret-vol is already published at .*, not .*bad-20\/mount/,
    ],
  ];
}

Deno.test({
  name: "fault corpus: bad Secret/ConfigMap contents and CSI requests through the driver",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const pki = await makePki();
    const gens = await makeGenerations(2, 1);
    const scratch = await startScratchApiServer("cacerts-fault-corpus-driver-");
    const { dir, kube } = scratch;
    let driver: DriverProcess | undefined;
    let client: CsiClient | undefined;
    try {
      await setupCluster(kube);
      const core = coreApi(kube.kubeConfig);
      await putSecret(core, "src-secret", { "ca.crt": gens[0].pem });
      await putSecret(core, "garbage", { "ca.crt": "garbage" });
      const putConfigMap = async (
        data: Record<string, string | Uint8Array>,
        binary?: Record<string, Uint8Array>,
      ) => {
        const body = {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { namespace: NS, name: "src-cm" },
          data: Object.fromEntries(
            Object.entries(data).map((
              [k, v],
            ) => [k, typeof v === "string" ? v : new TextDecoder().decode(v)]),
          ),
          binaryData: binary
            ? Object.fromEntries(Object.entries(binary).map(([k, v]) => [k, b64(v)]))
            : undefined,
        };
        try {
          await core.replaceNamespacedConfigMap({ namespace: NS, name: "src-cm", body });
        } catch (error) {
          if ((error as { code?: number }).code !== 404) throw error;
          await core.createNamespacedConfigMap({ namespace: NS, body });
        }
      };
      await putConfigMap({ "bundle.crt": gens[0].pem });
      await apply(kube, caProviderClass("from-secret", { kind: "Secret", name: "src-secret" }));
      await apply(
        kube,
        caProviderClass("from-cm", { kind: "ConfigMap", name: "src-cm", key: "bundle.crt" }),
      );
      await apply(kube, caProviderClass("to-missing", { kind: "Secret", name: "missing" }));
      await apply(kube, caProviderClass("to-garbage", { kind: "Secret", name: "garbage" }));
      const stateDir = join(dir, "state");
      driver = await startDriverProcess({
        dir,
        kubeconfigPath: kube.kubeconfigPath,
        stateDir,
        args: ["--base-roots=none"],
      });
      client = new CsiClient(driver.endpoint);
      const targets = {
        Secret: join(dir, "pods", "secret-vol", "mount"),
        ConfigMap: join(dir, "pods", "cm-vol", "mount"),
      };
      await client.publish(
        publishRequest("csi-secret-vol", targets.Secret, "secret-vol", "from-secret"),
      );
      await client.publish(publishRequest("csi-cm-vol", targets.ConfigMap, "cm-vol", "from-cm"));
      const volumeIds = { Secret: "csi-secret-vol", ConfigMap: "csi-cm-vol" };
      const records = async () =>
        (await Array.fromAsync(Deno.readDir(join(stateDir, "volumes")))).length;

      for (const [name, kind, data, binary, message] of objectCorpus(pki)) {
        await t.step(`${kind} content: ${name}`, async () => {
          const target = targets[kind];
          // Start from good content and a healthy volume, so each case's failure is its own.
          if (kind === "Secret") await putSecret(core, "src-secret", { "ca.crt": gens[0].pem });
          else await putConfigMap({ "bundle.crt": gens[0].pem });
          await waitFor("the volume is healthy", async () => {
            const c = (await client!.stats(volumeIds[kind], target)).volumeCondition;
            return c?.abnormal === false && c.message === "trust store current";
          }, { timeoutMs: 15_000, detail: () => driver!.process.logTail(5) });
          const before = await snapshot(target);
          const failed = await driver!.metric("cacerts_csi_update_failures_total");
          if (data === null) {
            if (kind === "Secret") {
              await core.deleteNamespacedSecret({ namespace: NS, name: "src-secret" });
            } else await core.deleteNamespacedConfigMap({ namespace: NS, name: "src-cm" });
          } else if (kind === "Secret") {
            await putSecret(core, "src-secret", data);
          } else {
            await putConfigMap(data, binary);
          }
          let condition: { abnormal: boolean; message: string } | undefined;
          await waitFor(`the volume reports: ${message}`, async () => {
            condition = (await client!.stats(volumeIds[kind], target)).volumeCondition;
            return message.test(condition?.message ?? "");
          }, {
            timeoutMs: 15_000,
            detail: () => JSON.stringify(condition) + driver!.process.logTail(5),
          });
          assert.equal(condition!.abnormal, true);
          assert.match(
            condition!.message,
            /^serving the last good trust store; latest update failed: /,
          );
          assert.ok((await driver!.metric("cacerts_csi_update_failures_total")) > failed);
          assert.deepEqual(await snapshot(target), before, "the store is untouched");
          assert.equal(readView(target, gens), 1);
        });
      }

      for (const [name, make, code, message] of csiCorpus()) {
        await t.step(`CSI NodePublishVolume: ${name}`, async () => {
          const req = make(dir);
          const podsBefore = await snapshot(join(dir, "pods"));
          const recordsBefore = await records();
          const error = await client!.publish(req).then(() => undefined, (e) => e);
          assert.ok(error instanceof CsiCallError, `expected a gRPC error, got ${error}`);
          assert.equal(status[error.code], status[code], error.message);
          assert.match(error.details, message);
          // Nothing written: no new directory with content, no mount, no record, no escape.
          const podsAfter = await snapshot(join(dir, "pods"));
          for (const [path, content] of podsAfter) {
            if (!podsBefore.has(path)) assert.equal(content, "dir", `${path} was written`);
          }
          for (const [path, content] of podsBefore) {
            assert.equal(podsAfter.get(path), content, `${path} changed`);
          }
          if (req.targetPath && !req.targetPath.includes("\0")) {
            assert.equal(await isMountPoint(req.targetPath), false);
          }
          await assert.rejects(Deno.lstat(join(dir, "escaped")), Deno.errors.NotFound);
          assert.equal(await records(), recordsBefore);
        });
      }

      await t.step("CSI NodeUnpublishVolume: target_path escaping with ..", async () => {
        const error = await client!.unpublish("csi-secret-vol", targets.Secret + "/../../x")
          .then(() => undefined, (e) => e);
        assert.ok(error instanceof CsiCallError);
        assert.equal(error.code, status.INVALID_ARGUMENT);
        assert.match(error.details, /must not contain "\.\."/);
        assert.equal(readView(targets.Secret, gens), 1);
      });

      await t.step("after all of it, a good update still reaches both volumes", async () => {
        await putSecret(core, "src-secret", { "ca.crt": gens[1].pem });
        await putConfigMap({ "bundle.crt": gens[1].pem });
        for (const target of Object.values(targets)) {
          await waitFor(`${target} updates`, () => readView(target, gens) === 2, {
            timeoutMs: 15_000,
            detail: () => driver!.process.logTail(),
          });
        }
        const stats = await client!.stats("csi-secret-vol", targets.Secret);
        assert.deepEqual(stats.volumeCondition, {
          abnormal: false,
          message: "trust store current",
        });
      });
      driver.process.assertRunning();
    } finally {
      client?.close();
      await driver?.process.stop();
      await scratch.cleanup();
    }
  },
});
