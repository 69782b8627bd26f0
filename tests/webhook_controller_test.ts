import assert from "node:assert/strict";
import {
  CLASS_API_VERSION,
  CLASS_GROUP,
  CLASS_KIND,
  CLASS_PLURAL,
  CLASS_VERSION,
} from "../api/mod.ts";
import { X509Certificate } from "node:crypto";
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../kube/mod.ts";
import { createLogger } from "../cli/mod.ts";
import {
  BundlePublishError,
  Controller,
  type ControllerOptions,
  DEFAULT_EXCLUDED_NAMESPACES,
  FIELD_MANAGER,
  pemTrustDomains,
} from "../webhook/controller.ts";
import {
  installCrds,
  type KubeApiServer,
  needsTools,
  runCommand,
  startKubeApiServer,
  waitFor,
} from "./harness/mod.ts";
import { setTimeout as delay } from "node:timers/promises";

const CRD_PATH = new URL("./harness/fixtures/caproviderclass_crd.yaml", import.meta.url).pathname;

/** A self-signed CA valid between two dates (`openssl ca` takes explicit start and end dates). */
async function selfSignedCa(
  name: string,
  notBefore: Date,
  notAfter: Date,
  spiffeTrustDomain?: string,
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webhook-ca-" });
  const stamp = (d: Date) => d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n" +
      "default_md = sha256\npolicy = p\nx509_extensions = ext\nunique_subject = no\n" +
      "[p]\ncommonName = supplied\n" +
      "[ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n" +
      (spiffeTrustDomain ? `subjectAltName = URI:spiffe://${spiffeTrustDomain}\n` : ""),
  );
  await Deno.writeTextFile(`${dir}/index.txt`, "");
  await Deno.writeTextFile(`${dir}/serial`, "01\n");
  const run = (args: string[]) => runCommand(["openssl", ...args], { cwd: dir, check: true });
  await run([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "k.pem",
    "-subj",
    `/C=US/O=SPIFFE/CN=${name}`,
    "-out",
    "r.csr",
  ]);
  await run([
    "ca",
    "-batch",
    "-config",
    "ca.cnf",
    "-selfsign",
    "-keyfile",
    "k.pem",
    "-in",
    "r.csr",
    "-startdate",
    stamp(notBefore),
    "-enddate",
    stamp(notAfter),
    "-out",
    "c.pem",
    "-notext",
  ]);
  const pem = await Deno.readTextFile(`${dir}/c.pem`);
  await Deno.remove(dir, { recursive: true });
  return pem;
}

const subjects = (pem: string) =>
  (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((b) =>
    new X509Certificate(b).subject.split("\n").find((l) => l.startsWith("CN="))
  );

Deno.test({
  name: "controller: classes in every namespace, never clobbering, and the bundle Secret",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const kube = await startKubeApiServer();
    const controllers: Controller[] = [];
    try {
      await installCrds(kube, CRD_PATH);
      for (const ns of ["spire", "old-a", "old-b", "users"]) {
        await kube.kubectl(["create", "namespace", ns], { check: true });
      }
      // A class the user wrote before the controller ran: no managed label.
      const userClass = {
        apiVersion: CLASS_API_VERSION,
        kind: CLASS_KIND,
        metadata: { name: "spire-ca", namespace: "users" },
        spec: { refs: [{ kind: "ConfigMap", namespace: "users", name: "mine", key: "ca.crt" }] },
      };
      await kube.kubectl(["create", "-f", "-"], { stdin: JSON.stringify(userClass), check: true });

      const day = 86_400_000;
      const now = Date.now();
      const current = await selfSignedCa("current-root", new Date(now - day), new Date(now + day));
      const expired = await selfSignedCa(
        "expired-root",
        new Date(now - 3 * day),
        new Date(now - day),
      );
      await kube.kubectl(["-n", "spire", "create", "configmap", "spire-bundle"], { check: true });
      await kube.kubectl([
        "-n",
        "spire",
        "patch",
        "configmap",
        "spire-bundle",
        "--type=merge",
        "-p",
        JSON.stringify({ data: { "bundle.crt": expired + current } }),
      ], { check: true });

      const core = kube.kubeConfig.makeApiClient(CoreV1Api);
      const custom = kube.kubeConfig.makeApiClient(CustomObjectsApi);
      const getClass = (namespace: string) =>
        custom.getNamespacedCustomObject({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace,
          plural: CLASS_PLURAL,
          name: "spire-ca",
        }).catch(() => undefined);
      const start = async () => {
        const writes: string[] = [];
        const controller = new Controller({
          client: kube.client,
          className: "spire-ca",
          excludedNamespaces: DEFAULT_EXCLUDED_NAMESPACES,
          resyncMs: 500,
          onWrite: (what) => writes.push(what),
        });
        controllers.push(controller);
        await controller.start();
        return { controller, writes };
      };
      const first = await start();

      await t.step("existing namespaces get the class at start, excluded ones do not", async () => {
        for (const ns of ["default", "old-a", "old-b"]) {
          const cls = await waitFor(`class in ${ns}`, () => getClass(ns), { timeoutMs: 10_000 });
          assert.equal(cls.metadata.labels["app.kubernetes.io/managed-by"], "spire-cacerts");
          assert.deepEqual(cls.spec.refs, [{
            apiGroup: "",
            kind: "Secret",
            namespace: "spire",
            name: "spire-ca-bundle",
            key: "ca.crt",
          }]);
          const managers = cls.metadata.managedFields.map((f: { manager: string }) => f.manager);
          assert.deepEqual(managers, [FIELD_MANAGER]);
        }
        for (const ns of ["kube-system", "kube-public", "spire"]) {
          assert.equal(await getClass(ns), undefined, ns);
        }
      });

      await t.step("a user's class is left as written", async () => {
        assert.equal(await first.controller.ensureClass("users"), "user-owned");
        const cls = await getClass("users");
        assert.deepEqual(cls.spec, userClass.spec);
        assert.equal(cls.metadata.labels?.["app.kubernetes.io/managed-by"], undefined);
      });

      await t.step("a new namespace gets its class within 2 s", async () => {
        const created = performance.now();
        await core.createNamespace({ body: { metadata: { name: "fresh" } } });
        await waitFor("class in fresh", () => getClass("fresh"), {
          timeoutMs: 2_000,
          intervalMs: 20,
        });
        console.log(`class in new namespace after ${(performance.now() - created).toFixed(0)} ms`);
      });

      await t.step("the Secret holds the current root only", async () => {
        const secret = await waitFor(
          "bundle secret",
          () =>
            core.readNamespacedSecret({ namespace: "spire", name: "spire-ca-bundle" }).catch(() =>
              undefined
            ),
          { timeoutMs: 10_000 },
        );
        const pem = atob(secret.data!["ca.crt"]);
        assert.deepEqual(subjects(pem), ["CN=current-root"]);
        assert.equal(secret.metadata?.labels?.["app.kubernetes.io/managed-by"], "spire-cacerts");
      });

      await t.step("a managed class a user edited is not overwritten", async () => {
        const edited = {
          apiVersion: CLASS_API_VERSION,
          kind: CLASS_KIND,
          metadata: {
            name: "spire-ca",
            namespace: "old-a",
            labels: { "app.kubernetes.io/managed-by": "spire-cacerts" },
          },
          spec: { refs: [{ kind: "Secret", namespace: "old-a", name: "own", key: "ca.crt" }] },
        };
        await kube.kubectl(
          ["apply", "--server-side", "--force-conflicts", "--field-manager=someone", "-f", "-"],
          { stdin: JSON.stringify(edited), check: true },
        );
        assert.equal(await first.controller.ensureClass("old-a"), "conflict");
        assert.deepEqual((await getClass("old-a")).spec.refs, edited.spec.refs);
      });

      await t.step("a deleted class comes back on the periodic pass", async () => {
        await custom.deleteNamespacedCustomObject({
          group: CLASS_GROUP,
          version: CLASS_VERSION,
          namespace: "old-b",
          plural: CLASS_PLURAL,
          name: "spire-ca",
        });
        await waitFor("class back in old-b", () => getClass("old-b"), { timeoutMs: 5_000 });
      });

      await t.step("a second replica converges without writing again", async () => {
        const second = await start();
        await delay(1_000);
        assert.deepEqual(second.writes, [], "nothing differed, so nothing was written");
        assert.deepEqual((await getClass("users")).spec, userClass.spec);
      });

      await t.step("a new SPIRE root reaches the Secret", async () => {
        const next = await selfSignedCa("next-root", new Date(now - day), new Date(now + 2 * day));
        await core.patchNamespacedConfigMap({
          namespace: "spire",
          name: "spire-bundle",
          body: [{ op: "replace", path: "/data/bundle.crt", value: expired + current + next }],
        });
        await waitFor("secret with next root", async () => {
          const secret = await core.readNamespacedSecret({
            namespace: "spire",
            name: "spire-ca-bundle",
          });
          const names = subjects(atob(secret.data!["ca.crt"]));
          return names.length === 2 && names;
        }, { timeoutMs: 5_000 });
        const secret = await core.readNamespacedSecret({
          namespace: "spire",
          name: "spire-ca-bundle",
        });
        assert.deepEqual(subjects(atob(secret.data!["ca.crt"])).sort(), [
          "CN=current-root",
          "CN=next-root",
        ]);
      });
    } finally {
      for (const controller of controllers) await controller.stop();
      await kube.stop();
    }
  },
});

const ROOT = new URL("..", import.meta.url).pathname;
const WEBHOOK_RBAC = `${ROOT}manifests/webhook/rbac.yaml`;
const CLASS_CRD = `${ROOT}manifests/crds/caproviderclasses.yaml`;
const SIGNER = "cacerts.csi.cert-manager.io/spire-example.org";
const BUNDLE = "cacerts.csi.cert-manager.io:spire-example.org:bundle";

/** A kubeconfig that authenticates with the webhook ServiceAccount's token (`kubectl create token`). */
async function webhookKubeConfig(
  kube: KubeApiServer,
): Promise<{ client: KubeClient; kubeConfig: KubeConfig }> {
  const token = (await kube.kubectl(
    ["create", "token", "spire-cacerts-webhook", "-n", "spire-cacerts", "--duration=1h"],
    { check: true },
  )).stdout.trim();
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "test", server: kube.url, caData: btoa(kube.caPem) }],
    users: [{ name: "webhook", token }],
    contexts: [{ name: "webhook", cluster: "test", user: "webhook" }],
    currentContext: "webhook",
  });
  return { client: new KubeClient({ server: kube.url, caPem: kube.caPem, token }), kubeConfig: kc };
}

/** The HTTP status of a failed call, or "ok". */
async function outcome(call: () => Promise<unknown>): Promise<number | "ok"> {
  try {
    await call();
    return "ok";
  } catch (error) {
    if (error instanceof ApiException) return error.code;
    throw error;
  }
}

Deno.test({
  name: "bundle mirror as the webhook's ServiceAccount: ClusterTrustBundle and Secret, each " +
    "switchable, under exactly the manifests' RBAC",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const kube = await startKubeApiServer();
    const controllers: Controller[] = [];
    try {
      await installCrds(kube, CLASS_CRD);
      for (const ns of ["spire", "spire-cacerts", "shop"]) {
        await kube.kubectl(["create", "namespace", ns], { check: true });
      }
      await kube.kubectl(["apply", "-f", WEBHOOK_RBAC], { check: true });
      const { client: sa, kubeConfig: saKubeConfig } = await webhookKubeConfig(kube);

      const day = 86_400_000;
      const now = Date.now();
      const [expired, current, next] = await Promise.all([
        selfSignedCa("expired-root", new Date(now - 3 * day), new Date(now - day)),
        selfSignedCa("current-root", new Date(now - day), new Date(now + day)),
        selfSignedCa("next-root", new Date(now - day), new Date(now + 2 * day)),
      ]);
      const core = kube.kubeConfig.makeApiClient(CoreV1Api);
      const custom = kube.kubeConfig.makeApiClient(CustomObjectsApi);
      const setBundle = async (pem: string) => {
        await kube.kubectl(["apply", "-f", "-"], {
          stdin: JSON.stringify({
            apiVersion: "v1",
            kind: "ConfigMap",
            metadata: { namespace: "spire", name: "spire-bundle" },
            data: { "bundle.crt": pem },
          }),
          check: true,
        });
      };
      const readBundle = () =>
        custom.getClusterCustomObject({
          group: "certificates.k8s.io",
          version: "v1",
          plural: "clustertrustbundles",
          name: BUNDLE,
        }).then(
          (o) =>
            o as {
              metadata: { labels?: Record<string, string> };
              spec: { signerName: string; trustBundle: string };
            },
          () => undefined,
        );
      const readSecret = () =>
        core.readNamespacedSecret({ namespace: "spire", name: "spire-ca-bundle" }).catch(() =>
          undefined
        );
      const bundleRoots = async () => subjects((await readBundle())?.spec.trustBundle ?? "").sort();
      const secretRoots = async () => {
        const data = (await readSecret())?.data?.["ca.crt"];
        return data === undefined ? [] : subjects(atob(data)).sort();
      };
      const start = async (options: Partial<ControllerOptions>) => {
        const controller = new Controller({
          client: sa,
          className: "spire-ca",
          excludedNamespaces: DEFAULT_EXCLUDED_NAMESPACES,
          clusterTrustBundle: { trustDomain: "example.org" },
          ...options,
        });
        controllers.push(controller);
        await controller.start();
        return controller;
      };
      await setBundle(expired + current);

      await t.step(
        "SPIRE's roots reach the ClusterTrustBundle and the Secret, expired dropped",
        async () => {
          await start({});
          await waitFor("ClusterTrustBundle", async () => (await bundleRoots()).length > 0, {
            timeoutMs: 10_000,
          });
          const bundle = (await readBundle())!;
          assert.equal(bundle.spec.signerName, SIGNER);
          assert.equal(bundle.metadata.labels?.["app.kubernetes.io/managed-by"], "spire-cacerts");
          assert.deepEqual(await bundleRoots(), ["CN=current-root"]);
          await waitFor("Secret", async () => (await secretRoots()).length > 0, {
            timeoutMs: 10_000,
          });
          assert.deepEqual(await secretRoots(), ["CN=current-root"]);
          // The namespace controller ran under the same token: the managed class exists and
          // references the ClusterTrustBundle by name, so reading it takes no Secret read.
          const cls = await waitFor("class in shop", () =>
            custom.getNamespacedCustomObject({
              group: CLASS_GROUP,
              version: CLASS_VERSION,
              namespace: "shop",
              plural: CLASS_PLURAL,
              name: "spire-ca",
            }).catch(() => undefined), { timeoutMs: 10_000 }) as { spec: { refs: unknown[] } };
          assert.deepEqual(cls.spec.refs, [{
            apiGroup: "certificates.k8s.io",
            kind: "ClusterTrustBundle",
            name: BUNDLE,
          }]);
        },
      );

      await t.step("a new CA is added and the old one kept while SPIRE has it", async () => {
        await setBundle(expired + current + next);
        await waitFor("next root published", async () => (await bundleRoots()).length === 2, {
          timeoutMs: 10_000,
        });
        assert.deepEqual(await bundleRoots(), ["CN=current-root", "CN=next-root"]);
        await waitFor("next root in Secret", async () => (await secretRoots()).length === 2, {
          timeoutMs: 10_000,
        });
      });

      await t.step("the old CA goes once SPIRE drops it", async () => {
        await setBundle(next + expired);
        await waitFor("old root dropped", async () => (await bundleRoots()).length === 1, {
          timeoutMs: 10_000,
        });
        assert.deepEqual(await bundleRoots(), ["CN=next-root"]);
        await waitFor(
          "old root dropped from Secret",
          async () => (await secretRoots()).length === 1,
          { timeoutMs: 10_000 },
        );
        assert.deepEqual(await secretRoots(), ["CN=next-root"]);
      });
      for (const c of controllers.splice(0)) await c.stop();

      await t.step("--bundle-secret=false: only the ClusterTrustBundle is written", async () => {
        await core.deleteNamespacedSecret({ namespace: "spire", name: "spire-ca-bundle" });
        await custom.deleteClusterCustomObject({
          group: "certificates.k8s.io",
          version: "v1",
          plural: "clustertrustbundles",
          name: BUNDLE,
        });
        const controller = new Controller({
          client: sa,
          className: "spire-ca",
          excludedNamespaces: DEFAULT_EXCLUDED_NAMESPACES,
          clusterTrustBundle: { trustDomain: "example.org" },
          writeBundleSecret: false,
        });
        assert.deepEqual(await controller.syncBundle(), {
          secret: false,
          clusterTrustBundle: true,
        });
        assert.deepEqual(await bundleRoots(), ["CN=next-root"]);
        assert.equal(await readSecret(), undefined);
        assert.deepEqual(await controller.syncBundle(), {
          secret: false,
          clusterTrustBundle: false,
        });
      });

      await t.step("--cluster-trust-bundle=false: only the Secret is written", async () => {
        await custom.deleteClusterCustomObject({
          group: "certificates.k8s.io",
          version: "v1",
          plural: "clustertrustbundles",
          name: BUNDLE,
        });
        const controller = new Controller({
          client: sa,
          className: "spire-ca",
          excludedNamespaces: DEFAULT_EXCLUDED_NAMESPACES,
        });
        assert.deepEqual(await controller.syncBundle(), {
          secret: true,
          clusterTrustBundle: false,
        });
        assert.deepEqual(await secretRoots(), ["CN=next-root"]);
        assert.equal(await readBundle(), undefined);
      });

      await t.step(
        "another trust domain is refused by RBAC; the Secret is still written",
        async () => {
          await core.deleteNamespacedSecret({ namespace: "spire", name: "spire-ca-bundle" });
          const controller = new Controller({
            client: sa,
            className: "spire-ca",
            excludedNamespaces: DEFAULT_EXCLUDED_NAMESPACES,
            clusterTrustBundle: { trustDomain: "other.org" },
          });
          const error = await controller.syncBundle().then(() => undefined, (e) => e);
          assert.ok(error instanceof BundlePublishError, String(error));
          assert.deepEqual(error.failures.map((f) => f.target), [
            "ClusterTrustBundle cacerts.csi.cert-manager.io:spire-other.org:bundle",
          ]);
          assert.match(
            error.message,
            /HTTP 403: .*forbidden.*; grant it in manifests\/webhook\/rbac\.yaml, or run with --cluster-trust-bundle=false\)$/,
          );
          assert.deepEqual(await secretRoots(), ["CN=next-root"]);
        },
      );

      await t.step("the token can do nothing else", async () => {
        const saCore = saKubeConfig.makeApiClient(CoreV1Api);
        const saCustom = saKubeConfig.makeApiClient(CustomObjectsApi);
        const ctb = (name: string, signerName: string) => ({
          apiVersion: "certificates.k8s.io/v1",
          kind: "ClusterTrustBundle",
          metadata: { name },
          spec: { signerName, trustBundle: next },
        });
        const createCtb = (body: unknown) => () =>
          saCustom.createClusterCustomObject({
            group: "certificates.k8s.io",
            version: "v1",
            plural: "clustertrustbundles",
            body,
          });
        // Our signer, another object name: no create of other names.
        assert.equal(
          await outcome(createCtb(ctb(`${BUNDLE.replace(/bundle$/, "")}x`, SIGNER))),
          403,
        );
        // Another signer: no attest.
        assert.equal(
          await outcome(createCtb(ctb("example.com:other:bundle", "example.com/other"))),
          403,
        );
        // A bundle without signer under another name.
        assert.equal(await outcome(createCtb(ctb("plain", ""))), 403);
        // Deleting its own bundle is not granted either.
        assert.equal(
          await outcome(() =>
            saCustom.deleteClusterCustomObject({
              group: "certificates.k8s.io",
              version: "v1",
              plural: "clustertrustbundles",
              name: BUNDLE,
            })
          ),
          403,
        );
        const secret = (namespace: string, name: string) => ({
          apiVersion: "v1",
          kind: "Secret",
          metadata: { namespace, name },
          data: { "ca.crt": btoa(next) },
        });
        assert.equal(
          await outcome(() =>
            saCore.createNamespacedSecret({ namespace: "spire", body: secret("spire", "other") })
          ),
          403,
        );
        assert.equal(
          await outcome(() =>
            saCore.createNamespacedSecret({ namespace: "shop", body: secret("shop", "x") })
          ),
          403,
        );
        assert.equal(
          await outcome(() => saCore.listNamespacedSecret({ namespace: "spire" })),
          403,
        );
        assert.equal(
          await outcome(() =>
            saCore.deleteNamespacedSecret({ namespace: "spire", name: "spire-ca-bundle" })
          ),
          403,
        );
        assert.equal(
          await outcome(() => saCore.listNamespacedConfigMap({ namespace: "spire" })),
          403,
        );
        assert.equal(
          await outcome(() =>
            saCustom.createNamespacedCustomObject({
              group: CLASS_GROUP,
              version: CLASS_VERSION,
              namespace: "shop",
              plural: CLASS_PLURAL,
              body: {
                apiVersion: CLASS_API_VERSION,
                kind: CLASS_KIND,
                metadata: { namespace: "shop", name: "not-managed" },
                spec: { refs: [{ apiGroup: "", kind: "Secret", name: "x" }] },
              },
            })
          ),
          403,
        );
        // What it may do, for contrast: read its own Secret by name.
        assert.equal(
          await outcome(() =>
            saCore.readNamespacedSecret({ namespace: "spire", name: "spire-ca-bundle" })
          ),
          "ok",
        );
      });

      await t.step(
        "roots of another trust domain are published, with a warning naming the fix",
        async () => {
          const [ours, theirs] = await Promise.all([
            selfSignedCa("ours", new Date(now - day), new Date(now + day), "example.org"),
            selfSignedCa("theirs", new Date(now - day), new Date(now + day), "other.org"),
          ]);
          assert.deepEqual(pemTrustDomains(ours + theirs + next), ["example.org", "other.org"]);
          const lines: string[] = [];
          const controller = new Controller({
            client: sa,
            className: "spire-ca",
            excludedNamespaces: DEFAULT_EXCLUDED_NAMESPACES,
            clusterTrustBundle: { trustDomain: "example.org" },
            log: createLogger("warn", (line) => lines.push(line)),
          });
          const warned = () =>
            lines.map((l) => JSON.parse(l) as { msg: string }).filter((l) =>
              l.msg.includes("--trust-domain")
            );
          await setBundle(next + ours);
          await controller.syncBundle();
          assert.deepEqual(warned(), [], "a root of our trust domain: no warning");
          await setBundle(next + theirs);
          await controller.syncBundle();
          await controller.syncBundle();
          assert.equal(warned().length, 1, "warned once, not on every pass");
          assert.match(
            warned()[0].msg,
            /^SPIRE's roots name trust domain other\.org, not --trust-domain example\.org; .*signer cacerts\.csi\.cert-manager\.io\/spire-example\.org: set --trust-domain/,
          );
          assert.deepEqual(await bundleRoots(), ["CN=next-root", "CN=theirs"]);
        },
      );
    } finally {
      for (const controller of controllers) await controller.stop();
      await kube.stop();
    }
  },
});
