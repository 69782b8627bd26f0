import assert from "node:assert/strict";
import { CLASS_API_VERSION, CLASS_KIND, CLASSES_ATTRIBUTE } from "../api/mod.ts";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import {
  createCa,
  installCrds,
  type KubeApiServer,
  needsTools,
  runCommand,
  startKubeApiServer,
  toolPath,
  waitFor,
} from "./harness/mod.ts";
import { type DriverProcess, startDriverProcess } from "./harness/driver_process.ts";

const CRD = new URL("./harness/fixtures/caproviderclass_crd.yaml", import.meta.url);

/** SHA-256 fingerprints of every certificate in a PEM bundle, sorted. */
function fingerprints(pem: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b).fingerprint256).sort();
}

function fp(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

async function apply(kube: KubeApiServer, object: unknown): Promise<void> {
  await kube.kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(object), check: true });
}

function secret(ns: string, name: string, data: Record<string, string>) {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { namespace: ns, name },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, btoa(v)])),
  };
}

function podContext(pod: string, classes: string, os = "debian"): string {
  return [
    "csi.storage.k8s.io/ephemeral=true",
    `csi.storage.k8s.io/pod.name=${pod}`,
    "csi.storage.k8s.io/pod.namespace=shop",
    `csi.storage.k8s.io/pod.uid=uid-${pod}`,
    `os=${os}`,
    `${CLASSES_ATTRIBUTE}=${classes}`,
  ].join(",");
}

async function csc(driver: DriverProcess, args: string[]) {
  return await runCommand([
    toolPath("csc"),
    ...args,
    "--endpoint",
    driver.endpoint,
    "--timeout",
    "20s",
  ]);
}

async function publish(driver: DriverProcess, id: string, target: string, context: string) {
  return await csc(driver, [
    "node",
    "publish",
    "--target-path",
    target,
    "--read-only",
    "--cap",
    "SINGLE_NODE_READER_ONLY,mount,tmpfs",
    "--vol-context",
    context,
    id,
  ]);
}

async function isMountPoint(path: string): Promise<boolean> {
  const info = await Deno.readTextFile("/proc/self/mountinfo");
  return info.split("\n").some((line) => line.split(" ")[4] === path);
}

Deno.test({
  name: "driver publishes from CAProviderClasses on a real apiserver, follows updates and restarts",
  ...needsTools(["etcd", "kube-apiserver", "kubectl", "csc"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    // csc prints only the status message; the status codes are checked by csi-sanity and the
    // validation unit tests.
    const dir = await Deno.makeTempDir({ prefix: "cacerts-csi-kube-" });
    const kube = await startKubeApiServer();
    let driver: DriverProcess | undefined;
    const target = join(dir, "pods", "web-1", "mount");
    try {
      const cas = await Promise.all(
        ["one", "two", "three", "four", "five"].map((n) =>
          createCa(dir, `ca-${n}`, `Test CA ${n}`)
        ),
      );
      await installCrds(kube, CRD.pathname);
      for (const ns of ["shop", "spire"]) {
        await apply(kube, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
      }
      await apply(kube, secret("spire", "spire-ca-bundle", { "ca.crt": cas[0].certPem }));
      await apply(kube, {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { namespace: "shop", name: "spire-bundle" },
        data: { "bundle.crt": cas[1].certPem },
      });
      await apply(kube, {
        apiVersion: CLASS_API_VERSION,
        kind: CLASS_KIND,
        metadata: { namespace: "shop", name: "spire-ca" },
        spec: {
          refs: [
            {
              apiGroup: "",
              kind: "Secret",
              namespace: "spire",
              name: "spire-ca-bundle",
              key: "ca.crt",
            },
            { apiGroup: "", kind: "ConfigMap", name: "spire-bundle", key: "bundle.crt" },
          ],
        },
      });
      await apply(kube, {
        apiVersion: CLASS_API_VERSION,
        kind: CLASS_KIND,
        metadata: { namespace: "shop", name: "sneaky" },
        spec: { refs: [{ kind: "Secret", namespace: "kube-system", name: "anything" }] },
      });

      const driverArgs = ["--allowed-ref-namespaces=spire", "--base-roots=none"];
      const stateDir = join(dir, "state");
      driver = await startDriverProcess({
        dir,
        kubeconfigPath: kube.kubeconfigPath,
        stateDir,
        args: driverArgs,
      });
      const bundlePath = join(target, "ca-certificates.crt");

      await t.step("publish mounts a tmpfs holding both referenced CAs", async () => {
        const out = await publish(driver!, "csi-web-1", target, podContext("web-1", "spire-ca"));
        assert.equal(out.code, 0, out.stderr + driver!.process.logTail());
        assert.ok(await isMountPoint(target), "target is a mount point");
        assert.deepEqual(
          fingerprints(await Deno.readTextFile(bundlePath)),
          [fp(cas[0].certPem), fp(cas[1].certPem)].sort(),
        );
        assert.ok((await Deno.lstat(join(target, "..data"))).isSymlink);
      });

      await t.step("republish is idempotent and does not rewrite the store", async () => {
        const before = await Deno.readLink(join(target, "..data"));
        const out = await publish(driver!, "csi-web-1", target, podContext("web-1", "spire-ca"));
        assert.equal(out.code, 0, out.stderr);
        assert.equal(await Deno.readLink(join(target, "..data")), before);
      });

      await t.step("a keyless ref reads tls.crt from a Secret without ca.crt", async () => {
        // As kubeops/csi-driver-cacerts reads a keyless ref to a kubernetes.io/tls Secret.
        await apply(kube, {
          ...secret("shop", "web-tls", { "tls.crt": cas[4].certPem, "tls.key": cas[4].keyPem }),
          type: "kubernetes.io/tls",
        });
        await apply(kube, secret("shop", "no-ca-keys", { "tls.key": cas[4].keyPem }));
        for (const [name, secretName] of [["tls-only", "web-tls"], ["no-keys", "no-ca-keys"]]) {
          await apply(kube, {
            apiVersion: CLASS_API_VERSION,
            kind: CLASS_KIND,
            metadata: { namespace: "shop", name },
            spec: { refs: [{ apiGroup: "", kind: "Secret", name: secretName }] },
          });
        }
        const tlsTarget = join(dir, "pods", "web-6", "mount");
        const out = await publish(driver!, "csi-web-6", tlsTarget, podContext("web-6", "tls-only"));
        assert.equal(out.code, 0, out.stderr + driver!.process.logTail());
        assert.deepEqual(
          fingerprints(await Deno.readTextFile(join(tlsTarget, "ca-certificates.crt"))),
          [fp(cas[4].certPem)],
        );
        const gone = await csc(driver!, [
          "node",
          "unpublish",
          "--target-path",
          tlsTarget,
          "csi-web-6",
        ]);
        assert.equal(gone.code, 0, gone.stderr);

        const neither = await publish(
          driver!,
          "csi-web-7",
          join(dir, "pods", "web-7", "mount"),
          podContext("web-7", "no-keys"),
        );
        assert.notEqual(neither.code, 0);
        assert.match(
          neither.stderr,
          /Secret shop\/no-ca-keys \(from CAProviderClass shop\/no-keys\) has neither key "ca\.crt" nor "tls\.crt".*keys present: tls\.key.*pod shop\/web-7/,
        );
        assert.doesNotMatch(neither.stderr, /PRIVATE KEY|LS0t/, "no key material in the message");
      });

      await t.step("bad requests get the spec's code and name the pod and field", async () => {
        const cross = await publish(
          driver!,
          "csi-web-2",
          join(dir, "pods", "web-2", "mount"),
          podContext("web-2", "sneaky"),
        );
        assert.notEqual(cross.code, 0);
        assert.match(cross.stderr, /kube-system.*--allowed-ref-namespaces.*pod shop\/web-2/);
        const missing = await publish(
          driver!,
          "csi-web-3",
          join(dir, "pods", "web-3", "mount"),
          podContext("web-3", "nope"),
        );
        assert.match(
          missing.stderr,
          /CAProviderClass shop\/nope not found.*pod shop\/web-3/,
        );
        const writable = await csc(driver!, [
          "node",
          "publish",
          "--target-path",
          join(dir, "pods", "web-4", "mount"),
          "--cap",
          "SINGLE_NODE_WRITER,mount,tmpfs",
          "--vol-context",
          podContext("web-4", "spire-ca"),
          "csi-web-4",
        ]);
        assert.match(writable.stderr, /readonly must be true.*pod shop\/web-4/);
        const os = await publish(
          driver!,
          "csi-web-5",
          join(dir, "pods", "web-5", "mount"),
          podContext("web-5", "spire-ca", "windows"),
        );
        assert.match(os.stderr, /volumeAttributes\.os.*pod shop\/web-5/);
        // volume_capability.mount.mount_flags on the wire: only an SELinux context= and ro pass.
        const exec = await csc(driver!, [
          "node",
          "publish",
          "--target-path",
          join(dir, "pods", "web-6", "mount"),
          "--read-only",
          "--cap",
          "SINGLE_NODE_READER_ONLY,mount,tmpfs,ro,exec",
          "--vol-context",
          podContext("web-6", "spire-ca"),
          "csi-web-6",
        ]);
        assert.notEqual(exec.code, 0);
        assert.match(
          exec.stderr,
          /^volume_capability\.mount\.mount_flags: mount flag "exec" is refused.*pod shop\/web-6/,
        );
        assert.ok(!(await isMountPoint(join(dir, "pods", "web-6", "mount"))));
      });

      await t.step("a Secret update swaps the store atomically", async () => {
        const oldSet = fingerprints(await Deno.readTextFile(bundlePath));
        const newSet = [fp(cas[2].certPem), fp(cas[1].certPem)].sort();
        const seen = new Set<string>();
        let reading = true;
        const reader = (async () => {
          while (reading) {
            try {
              seen.add(fingerprints(await Deno.readTextFile(bundlePath)).join(","));
            } catch (error) {
              // As with kubelet's AtomicWriter, a reader that resolved `..data` just before the
              // swap can find the old directory gone: it retries. It must never see a mix.
              if (!(error instanceof Deno.errors.NotFound)) throw error;
            }
          }
        })();
        const swaps = await driver!.metric("cacerts_csi_store_writes_total");
        await apply(kube, secret("spire", "spire-ca-bundle", { "ca.crt": cas[2].certPem }));
        await waitFor("store follows the Secret", async () => {
          return fingerprints(await Deno.readTextFile(bundlePath)).join(",") === newSet.join(",");
        }, { timeoutMs: 15_000, intervalMs: 20, detail: () => driver!.process.logTail() });
        reading = false;
        await reader;
        for (const state of seen) {
          assert.ok(
            state === oldSet.join(",") || state === newSet.join(","),
            `a reader saw a mixed store: ${state}`,
          );
        }
        assert.ok((await driver!.metric("cacerts_csi_store_writes_total")) > swaps);
      });

      await t.step("garbage in the Secret keeps the store and emits an Event", async () => {
        const before = await Deno.readTextFile(bundlePath);
        await apply(kube, secret("spire", "spire-ca-bundle", { "ca.crt": "not a certificate" }));
        await waitFor("Event on the pod", async () => {
          const out = await kube.kubectl(["get", "events", "-n", "shop", "-o", "json"], {
            check: true,
          });
          const items = JSON.parse(out.stdout).items as {
            reason: string;
            message: string;
            involvedObject: { kind: string; name: string };
          }[];
          return items.find((e) =>
            e.reason === "TrustStoreUpdateFailed" && e.involvedObject.kind === "Pod" &&
            e.involvedObject.name === "web-1" && /spire-ca-bundle/.test(e.message)
          );
        }, { timeoutMs: 15_000, intervalMs: 200, detail: () => driver!.process.logTail() });
        assert.equal(await Deno.readTextFile(bundlePath), before);
        assert.ok((await driver!.metric("cacerts_csi_update_failures_total")) >= 1);
        const stats = await csc(driver!, ["node", "stats", `csi-web-1:${target}`]);
        assert.equal(stats.code, 0, stats.stderr);
      });

      await t.step("after a kill and restart the volume still follows the Secret", async () => {
        Deno.kill(driver!.process.pid, "SIGKILL");
        await driver!.process.stop();
        driver = await startDriverProcess({
          dir,
          kubeconfigPath: kube.kubeconfigPath,
          stateDir,
          args: driverArgs,
          logName: "driver-2.log",
        });
        await apply(kube, secret("spire", "spire-ca-bundle", { "ca.crt": cas[3].certPem }));
        const want = [fp(cas[3].certPem), fp(cas[1].certPem)].sort().join(",");
        await waitFor("store follows after restart", async () => {
          return fingerprints(await Deno.readTextFile(bundlePath)).join(",") === want;
        }, { timeoutMs: 15_000, intervalMs: 50, detail: () => driver!.process.logTail() });
      });

      await t.step("a ConfigMap update is followed too", async () => {
        await apply(kube, {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { namespace: "shop", name: "spire-bundle" },
          data: { "bundle.crt": cas[0].certPem },
        });
        const want = [fp(cas[3].certPem), fp(cas[0].certPem)].sort().join(",");
        await waitFor("store follows the ConfigMap", async () => {
          return fingerprints(await Deno.readTextFile(bundlePath)).join(",") === want;
        }, { timeoutMs: 15_000, intervalMs: 50, detail: () => driver!.process.logTail() });
      });

      await t.step("unpublish unmounts and leaves the target empty", async () => {
        const out = await csc(driver!, ["node", "unpublish", "--target-path", target, "csi-web-1"]);
        assert.equal(out.code, 0, out.stderr);
        assert.equal(await isMountPoint(target), false);
        assert.deepEqual(await Array.fromAsync(Deno.readDir(target)), []);
        const again = await csc(driver!, [
          "node",
          "unpublish",
          "--target-path",
          target,
          "csi-web-1",
        ]);
        assert.equal(again.code, 0, again.stderr);
        assert.deepEqual(await Array.fromAsync(Deno.readDir(join(stateDir, "volumes"))), []);
      });
      driver.process.assertRunning();
    } finally {
      await driver?.process.stop();
      if (await isMountPoint(target)) await runCommand(["umount", target]);
      await kube.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
