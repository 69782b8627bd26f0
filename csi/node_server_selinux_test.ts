/**
 * The node server's SELinux mount options on the fake mounter: kubelet's `context=` flag reaches
 * the mount call unchanged, the default context is added only on an SELinux node, a refused flag
 * fails the publish before anything is mounted, and the options are kept in the volume record;
 * the default probe mounts no selinuxfs on a kernel without SELinux (this host).
 */
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { DevCa } from "../x509/mod.ts";
import { CsiError } from "./errors.ts";
import { PUBLISH_TOTAL } from "./metrics.ts";
import type { Mounter } from "./mount.ts";
import { kernelHasSelinux, selinuxfsMounted } from "./selinux.ts";
import { caSecret, type Harness, harness, secretClass } from "./_test_utils.ts";

const KUBELET = 'context="system_u:object_r:container_file_t:s0:c12,c345"';
const DEFAULT = 'context="system_u:object_r:container_file_t:s0"';
const ca = await DevCa.create(1);

function sources(h: Harness): void {
  h.objects.put("CAProviderClass", "shop", "spire-ca", secretClass("ca"));
  h.objects.put("Secret", "shop", "ca", caSecret(ca.certPem));
}

for (const enabled of [true, false]) {
  Deno.test(`kubelet's context flag is passed to the mount unchanged (SELinux probe: ${enabled})`, async () => {
    const h = await harness({ selinuxEnabled: () => enabled });
    try {
      sources(h);
      await h.server.publish(h.publishRequest("v1", undefined, undefined, [KUBELET]));
      assert.deepEqual(h.mounter.calls.map((c) => [c.path, c.options]), [
        [h.target("v1"), [KUBELET]],
      ]);
      assert.deepEqual(h.state.records.get("v1")?.mountOptions, [KUBELET]);
    } finally {
      await h.close();
    }
  });
}

Deno.test("without kubelet's context an SELinux node mounts with container_file_t at s0", async () => {
  let probes = 0;
  const h = await harness({ selinuxEnabled: () => (probes++, true) });
  try {
    sources(h);
    await h.server.publish(h.publishRequest("v1"));
    await h.server.publish(h.publishRequest("v2", undefined, undefined, ["ro"]));
    assert.deepEqual(h.mounter.calls.map((c) => c.options), [[DEFAULT], [DEFAULT]]);
    assert.deepEqual(h.state.records.get("v1")?.mountOptions, [DEFAULT]);
    assert.equal(probes, 1, "probed once, when the server was built");
  } finally {
    await h.close();
  }
});

Deno.test("without kubelet's context a node without SELinux mounts with no context", async () => {
  const h = await harness({ selinuxEnabled: () => false });
  try {
    sources(h);
    await h.server.publish(h.publishRequest("v1"));
    assert.deepEqual(h.mounter.calls.map((c) => c.options), [[]]);
    assert.deepEqual(h.state.records.get("v1")?.mountOptions, []);
  } finally {
    await h.close();
  }
});

Deno.test("a refused mount flag fails the publish INVALID_ARGUMENT before anything is mounted", async () => {
  const h = await harness({ selinuxEnabled: () => true });
  try {
    sources(h);
    for (
      const flags of [
        ["exec"],
        [`${KUBELET},suid`],
        ["context=system_u:object_r:container_file_t:s0,dev"],
        [KUBELET, DEFAULT],
      ]
    ) {
      await assert.rejects(
        async () => await h.server.publish(h.publishRequest("v1", undefined, undefined, flags)),
        (e: unknown) => {
          assert.ok(e instanceof CsiError, String(e));
          assert.equal(e.code, status.INVALID_ARGUMENT);
          assert.match(
            e.message,
            /^volume_capability\.mount\.mount_flags: mount flag ".*" is refused: /,
          );
          assert.match(e.message, /\(pod shop\/web\)$/);
          return true;
        },
      );
    }
    assert.equal(h.mounter.mounts, 0);
    assert.equal(h.state.records.size, 0);
    assert.equal(h.objects.size, 0);
    assert.equal(h.server.metrics.value(PUBLISH_TOTAL, { result: "error" }) ?? 0, 0);
  } finally {
    await h.close();
  }
});

Deno.test("a republish and a restart keep the first mount and its context: nothing is mounted again", async () => {
  const h = await harness({ selinuxEnabled: () => true });
  try {
    sources(h);
    await h.server.publish(h.publishRequest("v1", undefined, undefined, [KUBELET]));
    await h.server.publish(h.publishRequest("v1", undefined, undefined, [KUBELET]));
    await h.server.stop();
    h.restart();
    assert.deepEqual(await h.server.restore(), { resumed: 1, forgotten: 0 });
    await h.server.idle();
    await h.server.publish(h.publishRequest("v1", undefined, undefined, [KUBELET]));
    assert.equal(h.mounter.mounts, 1);
    assert.deepEqual(h.state.records.get("v1")?.mountOptions, [KUBELET]);
  } finally {
    await h.close();
  }
});

Deno.test("a plain-directory volume records no mount options", async () => {
  const h = await harness({ plainDir: true, selinuxEnabled: () => true });
  try {
    sources(h);
    await h.server.publish(h.publishRequest("v1", undefined, undefined, [KUBELET]));
    assert.equal(h.mounter.mounts, 0);
    assert.equal(h.state.records.get("v1")?.mountOptions, undefined);
  } finally {
    await h.close();
  }
});

Deno.test("a probe that answers later is waited for by publish and restore", async () => {
  const h = await harness({ selinuxEnabled: () => Promise.resolve(true) });
  try {
    sources(h);
    assert.deepEqual(await h.server.restore(), { resumed: 0, forgotten: 0 });
    await h.server.publish(h.publishRequest("v1"));
    assert.deepEqual(h.mounter.calls.map((c) => c.options), [[DEFAULT]]);
  } finally {
    await h.close();
  }
});

Deno.test("a failed probe fails restore and first publishes, and is not an unhandled rejection", async () => {
  const h = await harness({ selinuxEnabled: () => Promise.reject(new Error("probe broke")) });
  try {
    sources(h);
    await new Promise((resolve) => setTimeout(resolve, 0));
    await assert.rejects(() => h.server.restore(), /probe broke/);
    await assert.rejects(() => h.server.publish(h.publishRequest("v1")), /probe broke/);
    assert.equal(h.mounter.mounts, 0);
  } finally {
    await h.close();
  }
});

for (const plainDir of [false, true]) {
  Deno.test({
    name:
      `the default probe on this host (no SELinux kernel) mounts no selinuxfs (plainDir: ${plainDir})`,
    ignore: kernelHasSelinux() || selinuxfsMounted(),
    fn: async () => {
      const h = await harness({ selinuxEnabled: undefined, plainDir });
      const selinuxfsMounts: string[] = [];
      (h.mounter as Mounter).mountSelinuxfs = (dir) => (
        selinuxfsMounts.push(dir), Promise.resolve()
      );
      h.restart();
      try {
        sources(h);
        await h.server.publish(h.publishRequest("v1"));
        assert.deepEqual(selinuxfsMounts, []);
        assert.deepEqual(h.mounter.calls.map((c) => c.options), plainDir ? [] : [[]]);
      } finally {
        await h.close();
      }
    },
  });
}
