/**
 * Least privilege of every service account the manifests deploy, asked of a real kube-apiserver:
 * the RBAC objects of `kubectl kustomize manifests` (namespaces, ServiceAccounts, Roles,
 * ClusterRoles and their bindings) are applied, and for each service account the pods of the
 * rendered manifests run as, the API server answers SubjectAccessReviews and (impersonated)
 * SelfSubjectRulesReviews:
 *
 * - no Secret or ConfigMap is readable outside the namespaces granted to it (checked in
 *   `default`, a fresh namespace, `kube-system`, `spire`, `spire-cacerts`, `spiffe-demo` and
 *   `cert-manager`, where ClusterIssuers keep their CA Secrets: nothing is granted there by
 *   default), and where a grant is by name, only those names;
 * - cert-manager Issuers and ClusterIssuers are read (get, list, watch) cluster-wide by the driver
 *   and the webhook only, and written by no one;
 * - `attest` on `signers` only for the webhook, only on its own signer;
 * - the webhook writes exactly its Secret, its ClusterTrustBundle, the managed class, class
 *   status and its ClusterSPIFFEIDs; no one else writes a Secret, a ClusterTrustBundle or RBAC.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { AuthorizationV1Api, KubeConfig, loadAllYaml } from "@kubernetes/client-node";
import {
  bundleObjectName,
  DEFAULT_TRUST_DOMAIN,
  signerNameFor,
} from "../webhook/cluster_trust_bundle.ts";
import { needsTools, runCommand, startKubeApiServer, toolPath } from "./harness/mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MANIFESTS = `${ROOT}manifests`;
const SIGNER = signerNameFor(DEFAULT_TRUST_DOMAIN);
const BUNDLE = bundleObjectName(SIGNER);
const FRESH = "rbac-fresh";
const NAMESPACES = [
  "default",
  FRESH,
  "kube-system",
  "spire",
  "spire-cacerts",
  "spiffe-demo",
  "cert-manager",
];
const RBAC_KINDS = [
  "Namespace",
  "ServiceAccount",
  "ClusterRole",
  "Role",
  "ClusterRoleBinding",
  "RoleBinding",
];
const READ_VERBS = ["get", "list", "watch"];

interface KubeObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: {
    template?: {
      spec?: { serviceAccountName?: string; containers?: { name: string; args?: string[] }[] };
    };
  };
  data?: Record<string, string>;
}

/** What one service account may read and write; anything else must be refused. */
interface Policy {
  /** Namespaces where it may read Secrets and ConfigMaps by any name. */
  readNamespaces: string[];
  /** `namespace/resource/name` it must be able to read by name, with the verbs. */
  readByName: { object: string; verbs: string[] }[];
  /** Writes it may do (see {@link writeKey}), `namespace|*` first. */
  writes: string[];
  /** Whether {@link Policy.writes} is the exact set (else: at most that set). */
  exactWrites: boolean;
}

const WEBHOOK = "system:serviceaccount:spire-cacerts:spire-cacerts-webhook";
const CSI = "system:serviceaccount:spire-cacerts:spire-cacerts-csi";
const SPIRE_SERVER = "system:serviceaccount:spire:spire-server";
const SPIRE_AGENT = "system:serviceaccount:spire:spire-agent";
const DEMO = "system:serviceaccount:spiffe-demo:default";

/** The target state of every product service account. */
const POLICIES: Record<string, Policy> = {
  [WEBHOOK]: {
    readNamespaces: [],
    readByName: [
      { object: "spire/secrets/spire-ca-bundle", verbs: READ_VERBS },
      { object: "spire/configmaps/spire-bundle", verbs: READ_VERBS },
    ],
    writes: [
      "*|create caproviderclasses.cacerts.csi.cert-manager.io/spire-ca",
      "*|patch caproviderclasses.cacerts.csi.cert-manager.io/spire-ca",
      "*|patch caproviderclasses/status.cacerts.csi.cert-manager.io",
      ...["spire-cacerts-webhook", "spiffe-demo-server", "spiffe-demo-client"].flatMap((n) => [
        `*|create clusterspiffeids.spire.spiffe.io/${n}`,
        `*|patch clusterspiffeids.spire.spiffe.io/${n}`,
      ]),
      `*|create clustertrustbundles.certificates.k8s.io/${BUNDLE}`,
      `*|patch clustertrustbundles.certificates.k8s.io/${BUNDLE}`,
      `*|attest signers.certificates.k8s.io/${SIGNER}`,
      "spire|create secrets/spire-ca-bundle",
      "spire|patch secrets/spire-ca-bundle",
      // Trust restart: the rollout patch of annotated workloads, and its Event.
      "*|patch deployments.apps",
      "*|patch statefulsets.apps",
      "*|patch daemonsets.apps",
      "*|create events",
    ],
    exactWrites: true,
  },
  // The driver reads the sources of the default class in spire only (a RoleBinding there).
  [CSI]: {
    readNamespaces: ["spire"],
    readByName: [],
    writes: [
      "*|create events",
      "*|patch events",
      "*|create events.events.k8s.io",
      "*|patch events.events.k8s.io",
    ],
    exactWrites: false,
  },
  [SPIRE_SERVER]: {
    readNamespaces: [],
    readByName: [{ object: "spire/configmaps/spire-bundle", verbs: ["get"] }],
    // Its own objects; checked below only for Secrets, ConfigMaps, bundles, signers and RBAC.
    writes: ["spire|patch configmaps/spire-bundle"],
    exactWrites: false,
  },
  [SPIRE_AGENT]: { readNamespaces: [], readByName: [], writes: [], exactWrites: false },
  [DEMO]: { readNamespaces: [], readByName: [], writes: [], exactWrites: false },
};

/** `verb resource[.group][/name]`. */
function writeKey(verb: string, group: string, resource: string, name?: string): string {
  return `${verb} ${resource}${group === "" ? "" : `.${group}`}${name ? `/${name}` : ""}`;
}

/** Writes that only {@link POLICIES} may grant: anything on these is checked for every account. */
function sensitive(key: string): boolean {
  return /^\S+ (secrets|configmaps|clustertrustbundles\.certificates\.k8s\.io|signers\.certificates\.k8s\.io|(cluster)?issuers\.cert-manager\.io|\*)(\/|$|\.)/
    .test(key) ||
    /\.rbac\.authorization\.k8s\.io/.test(key) ||
    /^(\*|bind|escalate|impersonate|attest|approve|sign) /.test(key);
}

function groupsOf(user: string): string[] {
  const ns = user.split(":")[2];
  return ["system:serviceaccounts", `system:serviceaccounts:${ns}`, "system:authenticated"];
}

function impersonating(admin: KubeConfig, user: string): KubeConfig {
  const cluster = admin.getCurrentCluster()!;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ ...admin.getCurrentUser()!, name: "as", impersonateUser: user }],
    contexts: [{ name: "as", cluster: cluster.name, user: "as" }],
    currentContext: "as",
  });
  return kc;
}

Deno.test({
  name: "RBAC of the rendered manifests: no Secret read outside granted namespaces, attest only " +
    "on our signer, the webhook writes only its own objects",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const rendered = await runCommand([toolPath("kubectl"), "kustomize", MANIFESTS], {
      check: true,
    });
    const objects = (loadAllYaml(rendered.stdout) as KubeObject[]).filter((o) => o?.kind);
    const kube = await startKubeApiServer();
    try {
      const rbac = RBAC_KINDS.flatMap((kind) => objects.filter((o) => o.kind === kind));
      await kube.kubectl(["apply", "-f", "-"], {
        stdin: JSON.stringify({ apiVersion: "v1", kind: "List", items: rbac }),
        check: true,
      });
      await kube.kubectl(["create", "namespace", FRESH], { check: true });
      const authz = kube.kubeConfig.makeApiClient(AuthorizationV1Api);
      const allowed = async (
        user: string,
        attrs: {
          verb: string;
          resource: string;
          group?: string;
          namespace?: string;
          name?: string;
          subresource?: string;
        },
      ) =>
        (await authz.createSubjectAccessReview({
          body: {
            apiVersion: "authorization.k8s.io/v1",
            kind: "SubjectAccessReview",
            spec: {
              user,
              groups: groupsOf(user),
              resourceAttributes: { ...attrs, group: attrs.group ?? "" },
            },
          },
        })).status?.allowed === true;

      await t.step("every service account the manifests run pods as is covered", () => {
        const accounts = new Set<string>();
        for (const o of objects) {
          if (o.kind === "ServiceAccount") {
            accounts.add(`system:serviceaccount:${o.metadata.namespace}:${o.metadata.name}`);
          }
          const pod = o.spec?.template?.spec;
          if (pod !== undefined) {
            const sa = pod.serviceAccountName ?? "default";
            accounts.add(`system:serviceaccount:${o.metadata.namespace}:${sa}`);
          }
        }
        assert.deepEqual([...accounts].sort(), Object.keys(POLICIES).sort());
      });

      await t.step("the names the RBAC grants are the ones the webhook is run with", () => {
        const conf = objects.find((o) =>
          o.kind === "ConfigMap" && o.metadata.name.startsWith("spire-server")
        )?.data?.["server.conf"];
        const args = objects.find((o) =>
          o.kind === "Deployment" && o.metadata.name === "spire-cacerts-webhook"
        )?.spec?.template?.spec?.containers?.find((c) =>
          c.name === "webhook"
        )?.args ?? [];
        const flag = (name: string) =>
          args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
        // --trust-domain defaults to DEFAULT_TRUST_DOMAIN; SPIRE's must be the same, since the
        // ClusterRole names that signer and bundle.
        const trustDomain = flag("trust-domain") ?? DEFAULT_TRUST_DOMAIN;
        assert.equal(/trust_domain\s*=\s*"([^"]+)"/.exec(conf ?? "")?.[1], trustDomain);
        assert.equal(signerNameFor(trustDomain), SIGNER);
        // The managed class is the only one the webhook may create: --class-name names it.
        assert.equal(flag("class-name") ?? "spire-ca", "spire-ca");
        assert.notEqual(flag("cluster-trust-bundle"), "false", "the default path publishes it");
      });

      await t.step("Secrets and ConfigMaps: no read outside the granted namespaces", async () => {
        const wrong: string[] = [];
        for (const [user, policy] of Object.entries(POLICIES)) {
          for (const resource of ["secrets", "configmaps"]) {
            for (const verb of READ_VERBS) {
              // Cluster-wide (every namespace at once): no one.
              if (await allowed(user, { verb, resource })) {
                wrong.push(`${user} ${verb} ${resource} -A`);
              }
              for (const namespace of NAMESPACES) {
                const granted = policy.readNamespaces.includes(namespace);
                const got = await allowed(user, { verb, resource, namespace });
                // Outside granted namespaces it must be refused; inside, the grant may be narrower.
                if (got && !granted) wrong.push(`${user} ${verb} ${resource} -n ${namespace}`);
                for (const entry of policy.readByName) {
                  const [ns, res, name] = entry.object.split("/");
                  if (ns !== namespace || res !== resource || !entry.verbs.includes(verb)) continue;
                  if (!await allowed(user, { verb, resource, namespace, name })) {
                    wrong.push(`${user} cannot ${verb} ${resource}/${name} -n ${namespace}`);
                  }
                  const other = await allowed(user, { verb, resource, namespace, name: "other" });
                  if (other && !granted) {
                    wrong.push(`${user} ${verb} ${resource}/other -n ${namespace}`);
                  }
                }
              }
            }
          }
        }
        assert.deepEqual(wrong, []);
      });

      await t.step(
        "the driver cannot read Secrets in default (it reads only in spire)",
        async () => {
          assert.equal(
            await allowed(CSI, { verb: "get", resource: "secrets", namespace: "default" }),
            false,
          );
        },
      );

      await t.step(
        "cert-manager issuers: read cluster-wide by the driver and the webhook, written by no one",
        async () => {
          const group = "cert-manager.io";
          const readers = [CSI, WEBHOOK];
          const wrong: string[] = [];
          for (const user of Object.keys(POLICIES)) {
            const reads = readers.includes(user);
            for (const verb of READ_VERBS) {
              const asked = [
                { resource: "clusterissuers", what: "clusterissuers" },
                { resource: "issuers", what: "issuers -A" },
                ...NAMESPACES.map((namespace) => ({
                  resource: "issuers",
                  namespace,
                  what: `issuers -n ${namespace}`,
                })),
              ];
              for (const { what, ...attrs } of asked) {
                if (await allowed(user, { verb, group, ...attrs }) !== reads) {
                  wrong.push(`${user} ${reads ? "cannot " : ""}${verb} ${what}`);
                }
              }
            }
            for (const verb of ["create", "update", "patch", "delete"]) {
              for (const resource of ["issuers", "clusterissuers"]) {
                const namespace = resource === "issuers" ? "cert-manager" : undefined;
                if (await allowed(user, { verb, group, resource, namespace })) {
                  wrong.push(`${user} ${verb} ${resource}`);
                }
              }
            }
          }
          assert.deepEqual(wrong, []);
        },
      );

      await t.step(
        "no Secret of cert-manager's namespace is readable by default (ClusterIssuer CAs)",
        async () => {
          for (const user of [CSI, WEBHOOK]) {
            for (const verb of READ_VERBS) {
              for (const name of [undefined, "ca-key-pair"]) {
                assert.equal(
                  await allowed(user, {
                    verb,
                    resource: "secrets",
                    namespace: "cert-manager",
                    name,
                  }),
                  false,
                  `${user} ${verb} secrets${name ? `/${name}` : ""} -n cert-manager`,
                );
              }
            }
          }
        },
      );

      await t.step("attest only by the webhook, only on its own signer", async () => {
        const signers = [
          SIGNER,
          signerNameFor("other.org"),
          "cacerts.csi.cert-manager.io/*",
          "kubernetes.io/kube-apiserver-client",
          "",
        ];
        const got: string[] = [];
        for (const user of Object.keys(POLICIES)) {
          for (const name of signers) {
            if (
              await allowed(user, {
                verb: "attest",
                group: "certificates.k8s.io",
                resource: "signers",
                name: name || undefined,
              })
            ) got.push(`${user} ${name}`);
          }
        }
        assert.deepEqual(got, [`${WEBHOOK} ${SIGNER}`]);
      });

      await t.step(
        "writes: the webhook exactly its own objects, no one else anything sensitive",
        async () => {
          // Rules every authenticated account has (system:basic-user and the like) are not the
          // manifests' doing: they are what an account without bindings gets.
          const rulesOf = async (user: string, namespace: string) => {
            const api = impersonating(kube.kubeConfig, user).makeApiClient(AuthorizationV1Api);
            const review = await api.createSelfSubjectRulesReview({
              body: {
                apiVersion: "authorization.k8s.io/v1",
                kind: "SelfSubjectRulesReview",
                spec: { namespace },
              },
            });
            assert.notEqual(review.status?.incomplete, true, `${user} -n ${namespace}`);
            const keys = new Set<string>();
            for (const rule of review.status?.resourceRules ?? []) {
              const names = rule.resourceNames?.length ? rule.resourceNames : [undefined];
              for (const verb of rule.verbs) {
                if (READ_VERBS.includes(verb)) continue;
                for (const group of rule.apiGroups ?? [""]) {
                  for (const resource of rule.resources ?? []) {
                    for (const name of names) keys.add(writeKey(verb, group, resource, name));
                  }
                }
              }
            }
            return keys;
          };
          const baseline = await rulesOf(`system:serviceaccount:${FRESH}:nobody`, FRESH);
          const wrong: string[] = [];
          for (const [user, policy] of Object.entries(POLICIES)) {
            const seen = new Set<string>();
            for (const namespace of NAMESPACES) {
              for (const key of await rulesOf(user, namespace)) {
                if (baseline.has(key)) continue;
                const scoped = policy.writes.includes(`${namespace}|${key}`) ||
                  policy.writes.includes(`*|${key}`);
                if (scoped) {
                  seen.add(policy.writes.includes(`*|${key}`) ? `*|${key}` : `${namespace}|${key}`);
                } else if (policy.exactWrites || sensitive(key)) {
                  wrong.push(`${user} -n ${namespace}: ${key}`);
                }
              }
            }
            if (policy.exactWrites) {
              for (const want of policy.writes) {
                if (!seen.has(want)) wrong.push(`${user} lacks ${want}`);
              }
            }
          }
          assert.deepEqual(wrong, []);
        },
      );

      await t.step("the webhook's writes, as the API server decides each request", async () => {
        const group = "certificates.k8s.io";
        const ctb = { group, resource: "clustertrustbundles" };
        const decisions = {
          "create own bundle": await allowed(WEBHOOK, { verb: "create", ...ctb, name: BUNDLE }),
          "patch own bundle": await allowed(WEBHOOK, { verb: "patch", ...ctb, name: BUNDLE }),
          "create a bundle by POST": await allowed(WEBHOOK, { verb: "create", ...ctb }),
          "patch another bundle": await allowed(WEBHOOK, { verb: "patch", ...ctb, name: "x" }),
          "delete own bundle": await allowed(WEBHOOK, { verb: "delete", ...ctb, name: BUNDLE }),
          "patch own Secret": await allowed(WEBHOOK, {
            verb: "patch",
            resource: "secrets",
            namespace: "spire",
            name: "spire-ca-bundle",
          }),
          "create a Secret in spire by POST": await allowed(WEBHOOK, {
            verb: "create",
            resource: "secrets",
            namespace: "spire",
          }),
          "patch another Secret in spire": await allowed(WEBHOOK, {
            verb: "patch",
            resource: "secrets",
            namespace: "spire",
            name: "spire-server",
          }),
          "patch a Secret in default": await allowed(WEBHOOK, {
            verb: "patch",
            resource: "secrets",
            namespace: "default",
            name: "spire-ca-bundle",
          }),
          "patch the managed class": await allowed(WEBHOOK, {
            verb: "patch",
            group: "cacerts.csi.cert-manager.io",
            resource: "caproviderclasses",
            namespace: "default",
            name: "spire-ca",
          }),
          "patch a user's class": await allowed(WEBHOOK, {
            verb: "patch",
            group: "cacerts.csi.cert-manager.io",
            resource: "caproviderclasses",
            namespace: "default",
            name: "mine",
          }),
          "patch a user's class status": await allowed(WEBHOOK, {
            verb: "patch",
            group: "cacerts.csi.cert-manager.io",
            resource: "caproviderclasses",
            subresource: "status",
            namespace: "default",
            name: "mine",
          }),
          "patch a Deployment": await allowed(WEBHOOK, {
            verb: "patch",
            group: "apps",
            resource: "deployments",
            namespace: "default",
            name: "web",
          }),
          "update a Deployment": await allowed(WEBHOOK, {
            verb: "update",
            group: "apps",
            resource: "deployments",
            namespace: "default",
            name: "web",
          }),
          "delete a Deployment": await allowed(WEBHOOK, {
            verb: "delete",
            group: "apps",
            resource: "deployments",
            namespace: "default",
            name: "web",
          }),
          "patch a Pod": await allowed(WEBHOOK, {
            verb: "patch",
            resource: "pods",
            namespace: "default",
            name: "web-0",
          }),
        };
        assert.deepEqual(decisions, {
          "create own bundle": true,
          "patch own bundle": true,
          "create a bundle by POST": false,
          "patch another bundle": false,
          "delete own bundle": false,
          "patch own Secret": true,
          "create a Secret in spire by POST": false,
          "patch another Secret in spire": false,
          "patch a Secret in default": false,
          "patch the managed class": true,
          "patch a user's class": false,
          "patch a user's class status": true,
          "patch a Deployment": true,
          "update a Deployment": false,
          "delete a Deployment": false,
          "patch a Pod": false,
        });
      });
    } finally {
      await kube.stop();
    }
  },
});
