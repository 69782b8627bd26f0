import assert from "node:assert/strict";
import {
  CLASS_API_VERSION,
  CLASS_GROUP,
  CLASS_KIND,
  CLASS_PLURAL,
  CLASS_VERSION,
} from "../api/mod.ts";
import { X509Certificate } from "node:crypto";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { Controller, DEFAULT_EXCLUDED_NAMESPACES, FIELD_MANAGER } from "../webhook/controller.ts";
import { installCrds, needsTools, runCommand, startKubeApiServer, waitFor } from "./harness/mod.ts";
import { setTimeout as delay } from "node:timers/promises";

const CRD_PATH = new URL("./harness/fixtures/caproviderclass_crd.yaml", import.meta.url).pathname;

/** A self-signed CA valid between two dates (`openssl ca` takes explicit start and end dates). */
async function selfSignedCa(name: string, notBefore: Date, notAfter: Date): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webhook-ca-" });
  const stamp = (d: Date) => d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n" +
      "default_md = sha256\npolicy = p\nx509_extensions = ext\nunique_subject = no\n" +
      "[p]\ncommonName = supplied\n" +
      "[ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n",
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
          kubeConfig: kube.kubeConfig,
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
