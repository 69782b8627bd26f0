import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { CsiError } from "./errors.ts";
import type { NodePublishVolumeRequest } from "./proto.ts";
import { MountFlagError } from "./selinux.ts";
import { validatePublish, validateStats, validateUnpublish } from "./validation.ts";

const FAMILIES = ["debian", "alpine", "rhel"];
const parseOs = (v: string) => {
  if (!FAMILIES.includes(v)) {
    throw new Error(`unknown OS family "${v}" (use ${FAMILIES.join(", ")})`);
  }
  return v;
};

function request(patch: Partial<NodePublishVolumeRequest> = {}): NodePublishVolumeRequest {
  return {
    volumeId: "csi-abc",
    targetPath: "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/certs/mount",
    stagingTargetPath: "",
    volumeCapability: {
      accessType: "mount",
      mount: {},
      accessMode: { mode: "SINGLE_NODE_READER_ONLY" },
    },
    readonly: true,
    volumeContext: {
      "csi.storage.k8s.io/ephemeral": "true",
      "csi.storage.k8s.io/pod.name": "web-1",
      "csi.storage.k8s.io/pod.namespace": "shop",
      "csi.storage.k8s.io/pod.uid": "u-1",
      os: "alpine",
      caProviderClasses: "spire-ca, spire/spire-root",
    },
    publishContext: {},
    secrets: {},
    ...patch,
  };
}

function rejects(req: NodePublishVolumeRequest, code: status, pattern: RegExp): void {
  assert.throws(() => validatePublish(req, { parseOs }), (e: unknown) => {
    assert.ok(e instanceof CsiError, `expected CsiError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("a well-formed ephemeral publish is accepted with classes resolved to namespaces", () => {
  const spec = validatePublish(request(), { parseOs });
  assert.equal(spec.os, "alpine");
  assert.deepEqual(spec.pod, { namespace: "shop", name: "web-1", uid: "u-1" });
  assert.deepEqual(spec.classes, [
    { namespace: "shop", name: "spire-ca" },
    { namespace: "spire", name: "spire-root" },
  ]);
});

Deno.test("os defaults to debian when absent", () => {
  const req = request();
  delete req.volumeContext.os;
  assert.equal(validatePublish(req, { parseOs }).os, "debian");
});

Deno.test("each invalid publish gets INVALID_ARGUMENT naming the field and the pod", () => {
  const ctx = request().volumeContext;
  const cases: [Partial<NodePublishVolumeRequest>, RegExp][] = [
    [{ volumeId: "" }, /volume_id is required \(pod shop\/web-1\)/],
    [{ targetPath: "" }, /target_path is required \(pod shop\/web-1\)/],
    [{ targetPath: "relative/dir" }, /target_path "relative\/dir" must be absolute/],
    [{ targetPath: "/var/lib/../etc" }, /must not contain "\.\."/],
    [{ volumeCapability: undefined }, /volume_capability is required/],
    [{
      volumeCapability: {
        accessType: "block",
        block: {},
        accessMode: { mode: "SINGLE_NODE_READER_ONLY" },
      },
    }, /block access is not supported/],
    [
      { volumeCapability: { accessType: "mount", mount: {}, accessMode: { mode: "UNKNOWN" } } },
      /access_mode is required/,
    ],
    [{ readonly: false }, /readonly must be true.*pod shop\/web-1/],
    [
      { volumeContext: { ...ctx, "csi.storage.k8s.io/ephemeral": "false" } },
      /only ephemeral inline volumes/,
    ],
    [
      { volumeContext: { ...ctx, os: "windows" } },
      /volumeAttributes\.os: unknown OS family "windows" \(use debian/,
    ],
    [
      { volumeContext: { ...ctx, caProviderClasses: "  " } },
      /volumeAttributes\.caProviderClasses is required/,
    ],
    [
      { volumeContext: { ...ctx, caProviderClasses: "a/b/c" } },
      /caProviderClasses: "a\/b\/c" is neither/,
    ],
    [{ volumeContext: { ...ctx, caProviderClasses: "Bad_Name" } }, /not a valid object name/],
  ];
  for (const [patch, pattern] of cases) rejects(request(patch), status.INVALID_ARGUMENT, pattern);
});

Deno.test("kubelet's SELinux context flag and ro are accepted and kept for the mount", () => {
  const flags = ['context="system_u:object_r:container_file_t:s0:c1,c2"', "ro"];
  const withFlags = (mountFlags?: string[]) =>
    request({
      volumeCapability: {
        accessType: "mount",
        mount: mountFlags ? { mountFlags } : {},
        accessMode: { mode: "SINGLE_NODE_READER_ONLY" },
      },
    });
  assert.deepEqual(validatePublish(withFlags(flags), { parseOs }).mountFlags, flags);
  assert.deepEqual(validatePublish(withFlags(), { parseOs }).mountFlags, []);
  assert.deepEqual(validatePublish(withFlags([]), { parseOs }).mountFlags, []);
});

Deno.test("a mount flag the driver refuses is INVALID_ARGUMENT naming the field, the flag and the pod", () => {
  const withFlags = (mountFlags: string[]) =>
    request({
      volumeCapability: {
        accessType: "mount",
        mount: { mountFlags },
        accessMode: { mode: "SINGLE_NODE_READER_ONLY" },
      },
    });
  rejects(
    withFlags(["exec"]),
    status.INVALID_ARGUMENT,
    /^volume_capability\.mount\.mount_flags: mount flag "exec" is refused: .* \(pod shop\/web-1\)$/,
  );
  rejects(
    withFlags(['context="system_u:object_r:container_file_t:s0",suid']),
    status.INVALID_ARGUMENT,
    /mount_flags: mount flag "context=\\"system_u:object_r:container_file_t:s0\\",suid" is refused: a comma outside a quoted label/,
  );
  assert.throws(() => validatePublish(withFlags(["dev"]), { parseOs }), (e: unknown) => {
    assert.ok(e instanceof CsiError);
    assert.ok(e.cause instanceof MountFlagError);
    assert.equal(e.cause.flag, "dev");
    return true;
  });
});

Deno.test("missing pod info is reported with the CSIDriver setting to change", () => {
  const ctx = { ...request().volumeContext };
  delete ctx["csi.storage.k8s.io/pod.name"];
  rejects(request({ volumeContext: ctx }), status.INVALID_ARGUMENT, /podInfoOnMount: true/);
});

Deno.test("field order follows csi-sanity: volume id before target path before capability", () => {
  rejects(
    request({ volumeId: "", targetPath: "", volumeCapability: undefined }),
    status.INVALID_ARGUMENT,
    /volume_id/,
  );
  rejects(
    request({ targetPath: "", volumeCapability: undefined }),
    status.INVALID_ARGUMENT,
    /target_path/,
  );
});

Deno.test("unpublish and stats need an id and a safe absolute path", () => {
  assert.deepEqual(validateUnpublish({ volumeId: "v", targetPath: "/t/x/" }), {
    volumeId: "v",
    targetPath: "/t/x",
  });
  assert.throws(
    () => validateUnpublish({ volumeId: "", targetPath: "/t" }),
    /volume_id is required/,
  );
  assert.throws(
    () => validateUnpublish({ volumeId: "v", targetPath: "" }),
    /target_path is required/,
  );
  assert.throws(
    () => validateUnpublish({ volumeId: "v", targetPath: "/a/../b" }),
    /must not contain/,
  );
  assert.throws(
    () => validateStats({ volumeId: "v", volumePath: "", stagingTargetPath: "" }),
    (e: unknown) =>
      e instanceof CsiError && e.code === status.INVALID_ARGUMENT &&
      /volume_path is required/.test(e.message),
  );
});
