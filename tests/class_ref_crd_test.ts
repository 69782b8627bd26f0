/**
 * The shipped CRD (manifests/crds/caproviderclasses.yaml) and the ref parser (api/'s
 * parseClassRefs) agree on which refs are usable: every ref the API server stores parses, and the
 * ClusterTrustBundle, Issuer and ClusterIssuer refs the parser refuses are refused at admission
 * too, with a message naming the rule. Run against a real kube-apiserver (server-side dry run).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { CLASS_API_VERSION, CLASS_KIND, parseClassRefs, SourceError } from "../api/mod.ts";
import { installCrds, needsTools, startKubeApiServer } from "./harness/mod.ts";

const CRD = join(new URL("../", import.meta.url).pathname, "manifests/crds/caproviderclasses.yaml");
const CTB = { apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle" };
const CM = { apiGroup: "cert-manager.io" };

/** A ref, and whether both the CRD and the parser accept it. */
const CASES: [string, Record<string, unknown>, boolean][] = [
  ["core Secret", { apiGroup: "", kind: "Secret", name: "a", key: "ca.crt" }, true],
  ["keyless ConfigMap, no apiGroup", { kind: "ConfigMap", name: "b" }, true],
  ["Secret in another namespace", { kind: "Secret", namespace: "spire", name: "c" }, true],
  ["bundle by name", { ...CTB, name: "example.com:demo:one" }, true],
  ["bundles of a signer", { ...CTB, signerName: "example.com/demo" }, true],
  [
    "bundles of a signer with labels",
    {
      ...CTB,
      signerName: "example.com/demo",
      labelSelector: {
        matchLabels: { team: "a" },
        matchExpressions: [{ key: "tier", operator: "In", values: ["x"] }],
      },
    },
    true,
  ],
  ["Secret without name", { kind: "Secret" }, false],
  ["bundle without apiGroup", { kind: "ClusterTrustBundle", name: "x" }, false],
  ["Secret in certificates.k8s.io", { ...CTB, kind: "Secret", name: "x" }, false],
  ["bundle with name and signer", { ...CTB, name: "x", signerName: "example.com/s" }, false],
  ["bundle with neither name nor signer", { ...CTB }, false],
  ["bundle with a namespace", { ...CTB, name: "x", namespace: "spire" }, false],
  ["bundle with a key", { ...CTB, name: "x", key: "ca.crt" }, false],
  ["labels without signer", { ...CTB, name: "x", labelSelector: {} }, false],
  ["signer on a Secret", { kind: "Secret", name: "x", signerName: "example.com/s" }, false],
  ["signer without a path", { ...CTB, signerName: "example.com" }, false],
  [
    "unknown operator",
    {
      ...CTB,
      signerName: "example.com/s",
      labelSelector: { matchExpressions: [{ key: "a", operator: "Like" }] },
    },
    false,
  ],
  ["CA Issuer in the class's namespace", { ...CM, kind: "Issuer", name: "ca" }, true],
  ["Issuer in another namespace", { ...CM, kind: "Issuer", namespace: "certs", name: "ca" }, true],
  ["ClusterIssuer", { ...CM, kind: "ClusterIssuer", name: "ca" }, true],
  ["Issuer without apiGroup", { kind: "Issuer", name: "x" }, false],
  ["Issuer in certificates.k8s.io", { ...CTB, kind: "Issuer", name: "x" }, false],
  ["Secret in cert-manager.io", { ...CM, kind: "Secret", name: "x" }, false],
  ["Issuer without name", { ...CM, kind: "Issuer" }, false],
  ["Issuer with a key", { ...CM, kind: "Issuer", name: "x", key: "ca.crt" }, false],
  [
    "ClusterIssuer with a namespace",
    { ...CM, kind: "ClusterIssuer", name: "x", namespace: "a" },
    false,
  ],
  ["signer on an Issuer", { ...CM, kind: "Issuer", name: "x", signerName: "example.com/s" }, false],
  ["another kind", { apiGroup: "cert-manager.io", kind: "Certificate", name: "x" }, false],
];

function parses(ref: Record<string, unknown>): boolean {
  try {
    parseClassRefs({ spec: { refs: [ref] } }, { namespace: "shop", name: "c" });
    return true;
  } catch (error) {
    if (error instanceof SourceError) return false;
    throw error;
  }
}

Deno.test({
  name: "the shipped CRD and parseClassRefs accept and refuse the same refs",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const kube = await startKubeApiServer();
    try {
      await installCrds(kube, CRD);
      await kube.kubectl(["create", "namespace", "shop"], { check: true });
      for (const [what, ref, usable] of CASES) {
        assert.equal(parses(ref), usable, `parser, ${what}`);
        const object = {
          apiVersion: CLASS_API_VERSION,
          kind: CLASS_KIND,
          metadata: { namespace: "shop", name: "c" },
          spec: { refs: [ref] },
        };
        const out = await kube.kubectl(["create", "--dry-run=server", "-f", "-"], {
          stdin: JSON.stringify(object),
        });
        assert.equal(out.code === 0, usable, `CRD, ${what}: ${out.stderr}`);
        if (!usable) assert.match(out.stderr, /spec\.refs\[0\]/, what);
      }
    } finally {
      await kube.stop();
    }
  },
});
