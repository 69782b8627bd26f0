import assert from "node:assert/strict";
import { parseClassRefs } from "../api/mod.ts";
import { forbiddenMessage, roleBindingCommand, serviceAccountOf } from "./source_access.ts";

const [secretRef, bundleRef] = parseClassRefs({
  spec: {
    refs: [
      { kind: "Secret", namespace: "team", name: "ca" },
      { apiGroup: "certificates.k8s.io", kind: "ClusterTrustBundle", name: "root" },
    ],
  },
}, { namespace: "shop", name: "c" });

const ANSWER = 'HTTP 403: secrets "ca" is forbidden: User ' +
  '"system:serviceaccount:ops:trust-driver" cannot list resource "secrets" in API group "" in ' +
  'the namespace "team"';

Deno.test("the RoleBinding command names the role, the ServiceAccount and the namespace", () => {
  assert.equal(
    roleBindingCommand("team"),
    "kubectl create rolebinding spire-cacerts-csi-source-reader " +
      "--clusterrole=spire-cacerts-csi-source-reader " +
      "--serviceaccount=spire-cacerts:spire-cacerts-csi -n team",
  );
});

Deno.test("a Forbidden message grants the ServiceAccount the API server named", () => {
  assert.deepEqual(serviceAccountOf(ANSWER), { namespace: "ops", name: "trust-driver" });
  assert.equal(serviceAccountOf('User "alice" cannot list'), undefined);
  const message = forbiddenMessage(secretRef, "CAProviderClass shop/c", {}, ANSWER);
  assert.ok(
    message.startsWith(`cannot read Secret team/ca (from CAProviderClass shop/c): ${ANSWER};`),
  );
  assert.match(message, /the driver's ServiceAccount ops\/trust-driver may not read/);
  assert.match(message, /--serviceaccount=ops:trust-driver -n team`$/);
  const configured = forbiddenMessage(secretRef, "x", {
    serviceAccount: { namespace: "a", name: "b" },
  }, ANSWER);
  assert.match(configured, /--serviceaccount=a:b -n team`$/, "a configured identity wins");
});

Deno.test("a Forbidden ClusterTrustBundle names the ClusterRole rule", () => {
  assert.match(
    forbiddenMessage(bundleRef, "CAProviderClass shop/c"),
    /cannot read ClusterTrustBundle root \(from CAProviderClass shop\/c\); .* add get, list and watch on them to ClusterRole spire-cacerts-csi/,
  );
});
