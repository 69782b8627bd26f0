/**
 * The two sides of the contract agree: the volume the webhook adds to a pod is one the driver's
 * validation accepts with the same OS family and classes, for every family, and the class object
 * the webhook's controller applies is one the driver's parser reads back to the bundle Secret.
 */

import assert from "node:assert/strict";
import type { V1Pod, V1Volume } from "@kubernetes/client-node";
import {
  ANNOTATION_PREFIX,
  ANNOTATIONS,
  DEFAULT_OS_FAMILY,
  DRIVER_NAME,
  INJECT_LABEL,
  OS_FAMILIES,
  parseClassRefs,
} from "../api/mod.ts";
import { POD_KEYS, validatePublish } from "../csi/validation.ts";
import { parseOsFamily } from "../trust_store/mod.ts";
import { desiredClass } from "../webhook/controller.ts";
import { planMutation } from "../webhook/mutate.ts";

function addedVolume(os?: string): V1Volume {
  const pod: V1Pod = {
    metadata: {
      name: "web-1",
      namespace: "shop",
      labels: { [INJECT_LABEL]: "true" },
      annotations: os === undefined ? {} : { [ANNOTATION_PREFIX + ANNOTATIONS.os]: os },
    },
    spec: { containers: [{ name: "app", image: "x" }] },
  };
  const { patch } = planMutation(pod, { driverName: DRIVER_NAME, className: "spire-ca" });
  const op = patch.find((o) => o.path === "/spec/volumes");
  assert.ok(op, JSON.stringify(patch));
  return (op.value as V1Volume[])[0];
}

function publish(volume: V1Volume) {
  return validatePublish({
    volumeId: "csi-1",
    targetPath: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/spire-cacerts/mount",
    stagingTargetPath: "",
    volumeCapability: {
      accessType: "mount",
      mount: {},
      accessMode: { mode: "SINGLE_NODE_READER_ONLY" },
    },
    readonly: volume.csi?.readOnly ?? false,
    volumeContext: {
      [POD_KEYS.ephemeral]: "true",
      [POD_KEYS.name]: "web-1",
      [POD_KEYS.namespace]: "shop",
      [POD_KEYS.uid]: "u",
      ...volume.csi?.volumeAttributes,
    },
    publishContext: {},
    secrets: {},
  }, { parseOs: parseOsFamily });
}

Deno.test("the volume the webhook adds is one the driver accepts, for every OS family", () => {
  for (const family of [undefined, ...OS_FAMILIES]) {
    const volume = addedVolume(family);
    assert.equal(volume.csi?.driver, DRIVER_NAME);
    const spec = publish(volume);
    assert.equal(spec.os, family ?? DEFAULT_OS_FAMILY);
    assert.deepEqual(spec.classes, [{ namespace: "shop", name: "spire-ca" }]);
  }
});

Deno.test("the class the webhook applies reads back as its bundle Secret ref", () => {
  const secret = { namespace: "spire", name: "spire-ca-bundle", key: "ca.crt" };
  const where = { namespace: "shop", name: "spire-ca" };
  assert.deepEqual(parseClassRefs(desiredClass(where.namespace, where.name, secret), where), [
    { kind: "Secret", ...secret, index: 0 },
  ]);
});
