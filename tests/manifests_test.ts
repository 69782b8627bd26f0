import assert from "node:assert/strict";
import {
  CLASS_API_VERSION,
  CLASS_GROUP,
  CLASS_PLURAL,
  DRIVER_NAME,
  INJECT_LABEL,
} from "../api/mod.ts";
import { fileURLToPath } from "node:url";
import { loadAllYaml } from "@kubernetes/client-node";
import { KubeClient } from "../kube/mod.ts";
import {
  freePorts,
  needsTools,
  runCommand,
  startKubeApiServer,
  startSpire,
  toolPath,
  waitFor,
} from "./harness/mod.ts";
import {
  checkManifests,
  EXCLUDED_NAMESPACES,
  type KubeObject,
  parseImage,
  REGISTRATIONS_CONFIGMAP,
} from "../scripts/manifest_rules.ts";
import { parseMemoryQuantity, v8FlagsFor } from "../cli/heap_flags.ts";
import {
  kubeRegistrationApi,
  parseRegistrations,
  RegistrationSync,
} from "../webhook/registrations.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MANIFESTS = `${ROOT}manifests`;
const VERSION = (JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)) as { version: string })
  .version;

async function render(): Promise<KubeObject[]> {
  const result = await runCommand([toolPath("kubectl"), "kustomize", MANIFESTS], { check: true });
  return (loadAllYaml(result.stdout) as unknown[]).filter(
    (o): o is KubeObject => typeof o === "object" && o !== null,
  );
}

function find(objects: KubeObject[], kind: string, name: string): KubeObject {
  const found = objects.find((o) =>
    o.kind === kind && (o.metadata as { name?: string }).name === name
  );
  assert.ok(found, `${kind} ${name} is rendered`);
  return found;
}

/** A deep copy that a test can break without touching the shared rendering. */
function copy(objects: KubeObject[]): KubeObject[] {
  return structuredClone(objects);
}

// Minimal typed views of the few objects the tests look into.
interface Container {
  name: string;
  image: string;
  args?: string[];
  livenessProbe?: unknown;
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string; mountPropagation?: string }[];
}
interface PodTemplateOwner {
  spec: {
    template: {
      metadata: { labels: Record<string, string> };
      spec: { containers: Container[]; initContainers?: Container[] };
    };
  };
}
interface Hook {
  failurePolicy: string;
  clientConfig: { caBundle?: string };
  namespaceSelector: { matchExpressions: { values: string[] }[] };
}

const tools = needsTools(["kubectl"]);

Deno.test({
  name: "manifests: kubectl kustomize renders every component",
  ...tools,
  fn: async () => {
    const objects = await render();
    const kinds = new Set(objects.map((o) => `${o.kind}/${(o.metadata as { name: string }).name}`));
    for (
      const expected of [
        "Namespace/spire",
        "Namespace/spire-cacerts",
        "Namespace/spiffe-demo",
        `CustomResourceDefinition/${CLASS_PLURAL}.${CLASS_GROUP}`,
        "CustomResourceDefinition/clusterspiffeids.spire.spiffe.io",
        "StatefulSet/spire-server",
        "DaemonSet/spire-agent",
        "ConfigMap/spire-bundle",
        `CSIDriver/${DRIVER_NAME}`,
        "DaemonSet/spire-cacerts-csi",
        "Deployment/spire-cacerts-webhook",
        "PodDisruptionBudget/spire-cacerts-webhook",
        "Service/spire-cacerts-webhook",
        "MutatingWebhookConfiguration/spire-cacerts-webhook",
        "Deployment/server",
        "Service/server-service",
        "Deployment/client",
        `ConfigMap/${REGISTRATIONS_CONFIGMAP}`,
      ]
    ) assert.ok(kinds.has(expected), `${expected} is rendered`);
    // No custom resource rides in the same apply as its CRD: the webhook applies ClusterSPIFFEIDs.
    const custom = objects.filter((o) =>
      String(o.apiVersion).includes(".") &&
      !/\.k8s\.io\//.test(String(o.apiVersion))
    );
    assert.deepEqual(custom.map((o) => o.kind), []);
  },
});

Deno.test({
  name: "manifests: rendered objects follow every deployment rule",
  ...tools,
  fn: async () => {
    const problems = checkManifests(await render(), { ownImageTag: VERSION });
    assert.deepEqual(problems, []);
  },
});

Deno.test({
  name: "manifests: the rule checker catches each kind of violation",
  ...tools,
  fn: async () => {
    const base = await render();
    const cases: [string, (o: KubeObject[]) => void, RegExp][] = [
      ["latest tag", (o) => {
        (find(o, "DaemonSet", "spire-agent") as unknown as PodTemplateOwner).spec.template.spec
          .containers[0].image = "ghcr.io/spiffe/spire-agent:latest";
      }, /uses :latest/],
      ["untagged", (o) => {
        (find(o, "Deployment", "server") as unknown as PodTemplateOwner).spec.template.spec
          .containers[0].image = "ghcr.io/spire-cacerts/workloads";
      }, /is not pinned/],
      ["missing probe", (o) => {
        delete (find(o, "Deployment", "spire-cacerts-webhook") as unknown as PodTemplateOwner)
          .spec.template.spec.containers[0].livenessProbe;
      }, /webhook: livenessProbe missing/],
      ["writable root", (o) => {
        (find(o, "Deployment", "client") as unknown as PodTemplateOwner).spec.template.spec
          .containers[0].securityContext = { allowPrivilegeEscalation: false };
      }, /readOnlyRootFilesystem/],
      ["selector mismatch", (o) => {
        (find(o, "Deployment", "server") as unknown as PodTemplateOwner).spec.template.metadata
          .labels = { app: "other" };
      }, /does not match its template/],
      ["caBundle applied", (o) => {
        const config = find(o, "MutatingWebhookConfiguration", "spire-cacerts-webhook");
        (config.webhooks as Hook[])[0].clientConfig.caBundle = "Zm9v";
      }, /caBundle must not be in the manifest/],
      ["namespace not excluded", (o) => {
        const config = find(o, "MutatingWebhookConfiguration", "spire-cacerts-webhook");
        (config.webhooks as Hook[])[0].namespaceSelector.matchExpressions[0].values = ["spire"];
      }, /must exclude/],
      ["ClusterSPIFFEID as a resource", (o) => {
        o.push({
          apiVersion: "spire.spiffe.io/v1alpha1",
          kind: "ClusterSPIFFEID",
          metadata: { name: "extra" },
          spec: {},
        });
      }, /ClusterSPIFFEID extra: a kustomize resource/],
      ["RBAC names out of step", (o) => {
        const role = find(o, "ClusterRole", "spire-cacerts-webhook");
        const rule = (role.rules as { resources: string[]; resourceNames?: string[] }[])
          .find((r) => r.resources.includes("clusterspiffeids"))!;
        rule.resourceNames = rule.resourceNames!.slice(1);
      }, /resourceNames of clusterspiffeids are .* but ConfigMap .* holds/],
      ["another kind among the registrations", (o) => {
        const cm = find(o, "ConfigMap", REGISTRATIONS_CONFIGMAP);
        const data = cm.data as Record<string, string>;
        data["clusterspiffeids.yaml"] +=
          "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n";
      }, /clusterspiffeids\.yaml, document 4, .*Secret s: .*not spire\.spiffe\.io\/v1alpha1/],
      ["init container before the webhook", (o) => {
        const spec = (find(o, "Deployment", "spire-cacerts-webhook") as unknown as PodTemplateOwner)
          .spec.template.spec;
        spec.initContainers = [{ ...spec.containers[1], name: "spiffe-helper-init" }];
      }, /no init container may run before the webhook/],
      ["registrations not mounted", (o) => {
        const webhook =
          (find(o, "Deployment", "spire-cacerts-webhook") as unknown as PodTemplateOwner).spec
            .template.spec.containers[0];
        webhook.volumeMounts = webhook.volumeMounts!.filter((m) => m.name !== "registrations");
      }, /--registrations-dir .* must be the mount path/],
      ["webhook pods sent to the webhook", (o) => {
        const webhook = find(o, "Deployment", "spire-cacerts-webhook") as unknown as
          & PodTemplateOwner
          & { metadata: { namespace: string } };
        webhook.metadata.namespace = "webhook-elsewhere";
        webhook.spec.template.metadata.labels[INJECT_LABEL] = "true";
      }, /its pods would be sent to the webhook itself/],
    ];
    for (const [label, breakIt, expected] of cases) {
      const broken = copy(base);
      breakIt(broken);
      const problems = checkManifests(broken, { ownImageTag: VERSION });
      assert.ok(
        problems.some((p) => expected.test(p)),
        `${label}: expected a problem matching ${expected}, got ${JSON.stringify(problems)}`,
      );
    }
  },
});

Deno.test({
  name: "manifests: CSI driver, SPIRE identities and helper config are as the product needs",
  ...tools,
  fn: async () => {
    const objects = await render();
    // loadAllYaml returns client-node model classes for built-in kinds: compare plain data.
    const csiDriver = find(objects, "CSIDriver", DRIVER_NAME);
    const driver = JSON.parse(JSON.stringify(csiDriver.spec));
    assert.deepEqual(driver, {
      attachRequired: false,
      podInfoOnMount: true,
      volumeLifecycleModes: ["Ephemeral"],
      requiresRepublish: true,
      fsGroupPolicy: "None",
      // kubelet passes a labelled pod's SELinux context as a mount flag (csi/selinux.ts).
      seLinuxMount: true,
    });
    // OpenShift admits the inline volume in restricted namespaces (restricted-v2 pods).
    assert.equal(
      (csiDriver.metadata as { labels?: Record<string, string> }).labels
        ?.["security.openshift.io/csi-ephemeral-volume-profile"],
      "restricted",
    );

    const csi = (find(objects, "DaemonSet", "spire-cacerts-csi") as unknown as PodTemplateOwner)
      .spec.template.spec.containers;
    const plugin = csi.find((c) => c.name === "csi-driver")!;
    assert.ok(plugin.args?.includes("--allowed-ref-namespaces=spire"));
    assert.ok(plugin.args?.includes(`--driver-name=${DRIVER_NAME}`));
    assert.equal(
      plugin.volumeMounts?.find((m) => m.mountPath === "/var/lib/kubelet/pods")?.mountPropagation,
      "Bidirectional",
    );
    const registrar = csi.find((c) => c.name === "node-driver-registrar")!;
    assert.ok(
      registrar.args?.includes(
        `--kubelet-registration-path=/var/lib/kubelet/plugins/${DRIVER_NAME}/csi.sock`,
      ),
    );

    // The ClusterSPIFFEIDs ship in the webhook's registrations ConfigMap, parsed as it parses them.
    const registrations = parseRegistrations(
      configMapData(objects, REGISTRATIONS_CONFIGMAP)["clusterspiffeids.yaml"],
      "clusterspiffeids.yaml",
    );
    const ids = Object.fromEntries(
      registrations.map((r) => [
        r.object.metadata.name,
        r.object.spec as { spiffeIDTemplate: string; ttl: string; dnsNameTemplates?: string[] },
      ]),
    );
    assert.equal(ids["spiffe-demo-server"].ttl, "10s");
    assert.match(ids["spiffe-demo-server"].spiffeIDTemplate, /\/workload\/server$/);
    assert.deepEqual(ids["spiffe-demo-server"].dnsNameTemplates, [
      "server-service",
      "server-service.spiffe-demo",
      "server-service.spiffe-demo.svc",
      "server-service.spiffe-demo.svc.cluster.local",
    ]);
    assert.equal(ids["spiffe-demo-client"].ttl, "60s");
    assert.match(ids["spiffe-demo-client"].spiffeIDTemplate, /\/workload\/client$/);
    assert.equal(ids["spire-cacerts-webhook"].ttl, "60m");
    assert.ok(
      ids["spire-cacerts-webhook"].dnsNameTemplates?.includes(
        "spire-cacerts-webhook.spire-cacerts.svc",
      ),
    );

    const bundle = find(objects, "ConfigMap", "spire-bundle");
    assert.equal(bundle.data, undefined, "spire-bundle ships empty; SPIRE's notifier fills it");

    const cmConfig = objects.find((o) =>
      o.kind === "ConfigMap" &&
      (o.metadata as { name: string }).name.startsWith("spire-controller-manager-")
    );
    const cmYaml = (cmConfig?.data as Record<string, string>)["controller-manager.yaml"];
    const parsed = loadAllYaml(cmYaml)[0] as { ignoreNamespaces: string[]; clusterName: string };
    // spire-controller-manager compiles each entry as a regular expression and ignores any
    // namespace it matches anywhere in the name.
    const ignored = (ns: string) => parsed.ignoreNamespaces.some((re) => new RegExp(re).test(ns));
    assert.ok(ignored("spire"));
    assert.ok(!ignored("spire-cacerts"));
    assert.ok(!ignored("spiffe-demo"));
    const serverConf = objects.find((o) =>
      o.kind === "ConfigMap" && (o.metadata as { name: string }).name.startsWith("spire-server-")
    )?.data as Record<string, string>;
    assert.match(serverConf["server.conf"], new RegExp(`"${parsed.clusterName}" = \\{`));
    assert.match(serverConf["server.conf"], /KeyManager "disk"/);

    const webhookHelper = configMapData(objects, "spire-cacerts-webhook-spiffe-helper-");
    const exampleHelper = objects.find((o) =>
      o.kind === "ConfigMap" &&
      (o.metadata as { namespace?: string }).namespace === "spiffe-demo" &&
      (o.metadata as { name: string }).name.includes("spiffe-helper")
    )?.data as Record<string, string>;
    assert.equal(
      webhookHelper["spiffe-helper.hcl"],
      exampleHelper["spiffe-helper.hcl"],
      "webhook and examples use the same sidecar config",
    );
    assert.match(webhookHelper["spiffe-helper.hcl"], /daemon_mode = true/);
    // The webhook has no init container (it creates its own ClusterSPIFFEID); the examples do.
    assert.deepEqual(Object.keys(webhookHelper), ["spiffe-helper.hcl"]);
    assert.match(exampleHelper["spiffe-helper-init.hcl"], /daemon_mode = false/);

    const client = (find(objects, "Deployment", "client") as unknown as PodTemplateOwner).spec
      .template;
    assert.equal(client.metadata.labels[INJECT_LABEL], "true");
    assert.ok(client.spec.containers[0].args?.includes("--system-certs=true"));

    for (const o of objects) {
      for (
        const c of ((o as unknown as Partial<PodTemplateOwner>).spec?.template?.spec
          ?.containers ?? [])
      ) {
        const ref = parseImage(c.image);
        assert.ok(ref.tag && ref.tag !== "latest", `${c.image} is pinned`);
      }
    }
    const hook = (find(objects, "MutatingWebhookConfiguration", "spire-cacerts-webhook")
      .webhooks as Hook[])[0];
    assert.equal(hook.failurePolicy, "Fail");
    assert.deepEqual(hook.namespaceSelector.matchExpressions[0].values, [...EXCLUDED_NAMESPACES]);
  },
});

Deno.test({
  name:
    "manifests: a real kube-apiserver accepts every object (dry run, apply, read back, admission)",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  fn: async () => {
    const objects = await render();
    const kube = await startKubeApiServer();
    try {
      // Namespaces and CRDs first: a server-side dry run cannot see namespaces or types that the
      // same dry run would create. (Applied from the files: loadAllYaml's model classes rename
      // fields such as x-kubernetes-list-type, so parsed objects are never sent back.)
      await kube.kubectl(["apply", "--server-side", "-f", `${MANIFESTS}/namespaces.yaml`], {
        check: true,
      });
      await kube.kubectl(["apply", "--server-side", "-k", `${MANIFESTS}/crds`], { check: true });
      await kube.kubectl(
        ["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        { check: true },
      );

      const dry = await kube.kubectl([
        "apply",
        "--server-side",
        "--dry-run=server",
        "-k",
        MANIFESTS,
      ]);
      assert.equal(dry.code, 0, `dry run failed:\n${dry.stderr}`);
      const accepted = dry.stdout.trim().split("\n").filter((l) => l.includes("(server dry run)"));
      assert.equal(accepted.length, objects.length, dry.stdout);

      // The real apply, as an operator types it (client-side apply).
      const applied = await kube.kubectl(["apply", "-k", MANIFESTS]);
      assert.equal(applied.code, 0, `apply failed:\n${applied.stderr}`);

      const got = await kube.kubectl(["get", "-k", MANIFESTS, "-o", "json"], { check: true });
      const items = (JSON.parse(got.stdout) as { items: KubeObject[] }).items;
      const key = (o: KubeObject) => {
        const m = o.metadata as { name: string; namespace?: string };
        return `${o.kind}/${m.namespace ?? ""}/${m.name}`;
      };
      assert.deepEqual(items.map(key).sort(), objects.map(key).sort());

      // The schema of CAProviderClass is enforced: a valid object is stored, a bad kind is not.
      const cap = (kind: string) =>
        JSON.stringify({
          apiVersion: CLASS_API_VERSION,
          kind: "CAProviderClass",
          metadata: { name: `check-${kind.toLowerCase()}`, namespace: "spiffe-demo" },
          spec: {
            refs: [{
              apiGroup: "",
              kind,
              namespace: "spire",
              name: "spire-ca-bundle",
              key: "ca.crt",
            }],
          },
        });
      await kube.kubectl(["create", "-f", "-"], { stdin: cap("Secret"), check: true });
      const bad = await kube.kubectl(["create", "-f", "-"], { stdin: cap("Certificate") });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /spec\.refs\[0\]\.kind: Unsupported value: "Certificate"/);
      const columns = await kube.kubectl(["get", "cap", "-n", "spiffe-demo"], { check: true });
      assert.match(columns.stdout, /^NAME\s+REFS\s+READY\s+CERTIFICATES\s+EXPIRES\s+AGE/m);

      // The webhook's selectors and failurePolicy, as the real apiserver applies them. No webhook
      // pod runs here, so every call to it fails: a labelled pod in an application namespace is
      // refused (Fail), while unlabelled pods and pods in exempt namespaces never reach it.
      const pod = (name: string, namespace: string, labelled: boolean) =>
        JSON.stringify({
          apiVersion: "v1",
          kind: "Pod",
          metadata: {
            name,
            namespace,
            labels: labelled ? { [INJECT_LABEL]: "true" } : {},
          },
          spec: { containers: [{ name: "c", image: "registry.k8s.io/pause:3.10" }] },
        });
      const refused = await waitFor("the webhook configuration to take effect", async () => {
        const r = await kube.kubectl(["create", "-f", "-"], {
          stdin: pod("labelled", "spiffe-demo", true),
        });
        return r.code !== 0 ? r : false;
      });
      assert.match(
        refused.stderr,
        /failed calling webhook "trust-store\.cacerts\.csi\.cert-manager\.io"/,
      );
      await kube.kubectl(["create", "-f", "-"], {
        stdin: pod("unlabelled", "spiffe-demo", false),
        check: true,
      });
      for (const ns of EXCLUDED_NAMESPACES) {
        await kube.kubectl(["create", "-f", "-"], { stdin: pod("exempt", ns, true), check: true });
      }

      // What SPIRE's notifier writes (bundle data, caBundle) survives a re-apply: the manifests
      // do not own those fields.
      await kube.kubectl([
        "patch",
        "configmap",
        "spire-bundle",
        "-n",
        "spire",
        "--field-manager=spire-server",
        "--type=merge",
        "-p",
        JSON.stringify({ data: { "bundle.crt": "PEM" } }),
      ], { check: true });
      await kube.kubectl([
        "patch",
        "mutatingwebhookconfiguration",
        "spire-cacerts-webhook",
        "--field-manager=spire-server",
        "--type=json",
        "-p",
        JSON.stringify([{ op: "add", path: "/webhooks/0/clientConfig/caBundle", value: "UEVN" }]),
      ], { check: true });
      await kube.kubectl(["apply", "-k", MANIFESTS], { check: true });
      await kube.kubectl(["apply", "--server-side", "--force-conflicts", "-k", MANIFESTS], {
        check: true,
      });
      const after = await waitFor("re-applied objects", async () => {
        const cm = await kube.kubectl(
          [
            "get",
            "configmap",
            "spire-bundle",
            "-n",
            "spire",
            "-o",
            "jsonpath={.data.bundle\\.crt}",
          ],
          { check: true },
        );
        const ca = await kube.kubectl([
          "get",
          "mutatingwebhookconfiguration",
          "spire-cacerts-webhook",
          "-o",
          "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ], { check: true });
        return { bundle: cm.stdout, caBundle: ca.stdout };
      });
      assert.deepEqual(after, { bundle: "PEM", caBundle: "UEVN" });
    } finally {
      await kube.stop();
    }
  },
});

Deno.test({
  name:
    "manifests: one kubectl apply -k on a fresh cluster succeeds, and the webhook's RBAC applies the registrations",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const objects = await render();
    const kube = await startKubeApiServer();
    const dir = await Deno.makeTempDir({ prefix: "registrations-" });
    let sync: RegistrationSync | undefined;
    try {
      // Exactly what an operator types on a cluster that never saw the CRDs.
      const applied = await kube.kubectl(["apply", "-k", MANIFESTS]);
      assert.equal(applied.code, 0, `a single apply failed:\n${applied.stderr}`);
      await kube.kubectl(
        ["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        { check: true },
      );
      // The webhook's files as its pod mounts them, applied with its service account's token.
      for (const [name, text] of Object.entries(configMapData(objects, REGISTRATIONS_CONFIGMAP))) {
        await Deno.writeTextFile(`${dir}/${name}`, text);
      }
      const token = (await kube.kubectl(
        ["-n", "spire-cacerts", "create", "token", "spire-cacerts-webhook"],
        { check: true },
      )).stdout.trim();
      const asWebhook = new KubeClient({ server: kube.url, caPem: kube.caPem, token });
      sync = new RegistrationSync({ dir, api: kubeRegistrationApi(asWebhook), retryMinMs: 100 });
      await sync.start();
      const result = await sync.syncOnce();
      assert.deepEqual(result.failed, {});
      const got = await kube.kubectl(["get", "clusterspiffeids", "-o", "name"], { check: true });
      assert.deepEqual(got.stdout.trim().split("\n").sort(), [
        "clusterspiffeid.spire.spiffe.io/spiffe-demo-client",
        "clusterspiffeid.spire.spiffe.io/spiffe-demo-server",
        "clusterspiffeid.spire.spiffe.io/spire-cacerts-webhook",
      ]);
      // A second apply of the manifests leaves them alone (kubectl does not own them).
      await kube.kubectl(["apply", "-k", MANIFESTS], { check: true });
      const again = await kube.kubectl(["get", "clusterspiffeids", "-o", "name"], { check: true });
      assert.equal(again.stdout.trim().split("\n").length, 3);
    } finally {
      await sync?.stop();
      await kube.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

function configMapData(objects: KubeObject[], prefix: string): Record<string, string> {
  const found = objects.find((o) =>
    o.kind === "ConfigMap" && (o.metadata as { name: string }).name.startsWith(prefix)
  );
  assert.ok(found, `ConfigMap ${prefix}* is rendered`);
  return found.data as Record<string, string>;
}

Deno.test({
  name: "manifests: SPIRE 1.13.3 validates the shipped server and agent configurations",
  ...needsTools(["kubectl", "spire-server", "spire-agent"]),
  fn: async () => {
    const objects = await render();
    const dir = await Deno.makeTempDir({ prefix: "spire-conf-" });
    try {
      const validate = async (tool: "spire-server" | "spire-agent", text: string) => {
        const path = `${dir}/${tool}.conf`;
        await Deno.writeTextFile(path, text);
        return await runCommand([toolPath(tool), "validate", "-config", path]);
      };
      const server = configMapData(objects, "spire-server-")["server.conf"];
      const agent = configMapData(objects, "spire-agent-")["agent.conf"];
      const okServer = await validate("spire-server", server);
      assert.equal(okServer.code, 0, okServer.stdout + okServer.stderr);
      assert.match(okServer.stdout, /configuration file is valid/);
      const okAgent = await validate("spire-agent", agent);
      assert.equal(okAgent.code, 0, okAgent.stdout + okAgent.stderr);
      // The check can fail: a misspelt key is refused.
      const bad = await validate("spire-server", server.replace("live_path", "liveness_path"));
      assert.notEqual(bad.code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "manifests: spiffe-helper runs the shipped configs against real SPIRE (files + probe paths)",
  ...needsTools(["kubectl", "spire-server", "spire-agent", "spiffe-helper"]),
  fn: async () => {
    const objects = await render();
    const helper: Record<string, string> = {
      ...configMapData(objects, "spire-cacerts-webhook-spiffe-helper-"),
      "spiffe-helper-init.hcl": (objects.find((o) =>
        o.kind === "ConfigMap" &&
        (o.metadata as { namespace?: string }).namespace === "spiffe-demo" &&
        (o.metadata as { name: string }).name.includes("spiffe-helper")
      )?.data as Record<string, string>)["spiffe-helper-init.hcl"],
    };
    const webhook = find(objects, "Deployment", "spire-cacerts-webhook") as unknown as {
      spec: {
        template: {
          spec: {
            containers: {
              name: string;
              ports?: { name: string; containerPort: number }[];
              livenessProbe?: { httpGet: { path: string; port: string } };
              readinessProbe?: { httpGet: { path: string; port: string } };
            }[];
          };
        };
      };
    };
    const sidecar = webhook.spec.template.spec.containers.find((c) => c.name === "spiffe-helper")!;
    const probedPort = sidecar.ports?.find((p) => p.name === sidecar.livenessProbe?.httpGet.port)
      ?.containerPort;
    assert.equal(probedPort, 8081);

    const spire = await startSpire();
    const dir = await Deno.makeTempDir({ prefix: "helper-conf-" });
    let daemon: Deno.ChildProcess | undefined;
    try {
      await spire.createEntry({
        spiffeId: "/workload/webhook",
        dnsNames: ["spire-cacerts-webhook"],
      });
      const [port] = freePorts(1);
      const localize = (hcl: string, certDir: string) =>
        hcl.replace("/run/spire/agent-sockets/spire-agent.sock", spire.agentSocketPath)
          .replace("/run/spiffe/certs", certDir)
          .replace("bind_port = 8081", `bind_port = ${port}`);

      // Init container: fetch once, exit 0, all three files present.
      await Deno.mkdir(`${dir}/init`);
      await Deno.writeTextFile(
        `${dir}/init.hcl`,
        localize(helper["spiffe-helper-init.hcl"], `${dir}/init`),
      );
      const init = await runCommand([toolPath("spiffe-helper"), "-config", `${dir}/init.hcl`]);
      assert.equal(init.code, 0, init.stderr);
      for (const file of ["svid.pem", "svid_key.pem", "svid_bundle.pem"]) {
        const text = await Deno.readTextFile(`${dir}/init/${file}`);
        assert.match(text, /-----BEGIN /, `${file} written by the init config`);
      }

      // Sidecar: stays up and answers the paths the probes use; it writes the first set itself
      // into an empty directory (the webhook has no init container fetching it first).
      await Deno.mkdir(`${dir}/sidecar`);
      await Deno.writeTextFile(
        `${dir}/sidecar.hcl`,
        localize(helper["spiffe-helper.hcl"], `${dir}/sidecar`),
      );
      daemon = new Deno.Command(toolPath("spiffe-helper"), {
        args: ["-config", `${dir}/sidecar.hcl`],
        stdout: "null",
        stderr: "null",
        stdin: "null",
      }).spawn();
      for (const probe of [sidecar.livenessProbe!, sidecar.readinessProbe!]) {
        await waitFor(`spiffe-helper ${probe.httpGet.path}`, async () => {
          const res = await fetch(`http://127.0.0.1:${port}${probe.httpGet.path}`).catch(() =>
            undefined
          );
          await res?.body?.cancel();
          return res?.status === 200;
        }, { timeoutMs: 30_000 });
      }
      for (const file of ["svid.pem", "svid_key.pem", "svid_bundle.pem"]) {
        const text = await Deno.readTextFile(`${dir}/sidecar/${file}`);
        assert.match(text, /-----BEGIN /, `${file} written by the sidecar config`);
      }
    } finally {
      if (daemon) {
        daemon.kill("SIGTERM");
        await daemon.status;
      }
      await spire.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "manifests: the mutating webhook configuration is applied before any workload",
  ...tools,
  fn: async () => {
    // kubectl applies in the rendered order: a labelled pod created before the configuration
    // exists would be admitted without its trust store, and nothing would ever mutate it.
    const kinds = (await render()).map((o) => o.kind);
    const webhook = kinds.indexOf("MutatingWebhookConfiguration");
    assert.ok(webhook >= 0, kinds.join(" "));
    for (const workload of ["Deployment", "StatefulSet", "DaemonSet"]) {
      const first = kinds.indexOf(workload);
      assert.ok(first > webhook, `${workload} rendered before the MutatingWebhookConfiguration`);
    }
  },
});

/** The Deno containers whose V8 heap is sized from their memory limit (cli/heap_flags.ts). */
const HEAP_SIZED = [
  { kind: "Deployment", name: "spire-cacerts-webhook", container: "webhook" },
  { kind: "DaemonSet", name: "spire-cacerts-csi", container: "csi-driver" },
];

interface SizedContainer {
  name: string;
  env?: { name: string; value?: string }[];
  resources?: { requests?: { memory?: string }; limits?: { memory?: string } };
}

function sizedContainer(objects: KubeObject[], kind: string, name: string, container: string) {
  const owner = find(objects, kind, name) as unknown as {
    spec: { template: { spec: { containers: SizedContainer[] } } };
  };
  const found = owner.spec.template.spec.containers.find((c) => c.name === container);
  assert.ok(found, `${kind} ${name} has a container ${container}`);
  return found;
}

/** Each Deno container whose DENO_V8_FLAGS are not the function of its limits.memory. */
function heapFlagProblems(objects: KubeObject[]): string[] {
  const problems: string[] = [];
  for (const { kind, name, container } of HEAP_SIZED) {
    const c = sizedContainer(objects, kind, name, container);
    const limit = c.resources?.limits?.memory;
    const flags = c.env?.find((e) => e.name === "DENO_V8_FLAGS")?.value;
    if (limit === undefined) {
      problems.push(`${name}/${container}: no limits.memory`);
      continue;
    }
    const want = v8FlagsFor(parseMemoryQuantity(limit));
    if (flags !== want) {
      problems.push(
        `${name}/${container}: DENO_V8_FLAGS ${flags} for limit ${limit}, want ${want}`,
      );
    }
    const request = c.resources?.requests?.memory;
    if (request !== undefined && parseMemoryQuantity(request) > parseMemoryQuantity(limit)) {
      problems.push(`${name}/${container}: requests.memory ${request} above limit ${limit}`);
    }
  }
  return problems;
}

Deno.test({
  name: "manifests: each Deno container's DENO_V8_FLAGS are the heap sizes of its memory limit",
  ...tools,
  fn: async () => {
    const objects = await render();
    assert.deepEqual(heapFlagProblems(objects), []);
    for (const { kind, name, container } of HEAP_SIZED) {
      const shipped = sizedContainer(objects, kind, name, container);
      const flags = shipped.env!.find((e) => e.name === "DENO_V8_FLAGS")!.value;
      // A limit changed without the flags is caught...
      const raised = copy(objects);
      sizedContainer(raised, kind, name, container).resources!.limits!.memory = "1Gi";
      assert.deepEqual(heapFlagProblems(raised), [
        `${name}/${container}: DENO_V8_FLAGS ${flags} for limit 1Gi, want ` +
        v8FlagsFor(1024 * 1024 * 1024),
      ]);
      // ...and so are flags changed (or dropped) without the limit.
      const dropped = copy(objects);
      const d = sizedContainer(dropped, kind, name, container);
      d.env = d.env!.filter((e) => e.name !== "DENO_V8_FLAGS");
      assert.match(heapFlagProblems(dropped).join(), /DENO_V8_FLAGS undefined for limit/);
    }
  },
});
