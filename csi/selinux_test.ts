import assert from "node:assert/strict";
import { join } from "node:path";
import {
  DEFAULT_SELINUX_CONTEXT,
  MountFlagError,
  parseMountFlags,
  selinuxfsMounted,
  SelinuxProbeError,
  tmpfsMountOptions,
} from "./selinux.ts";

const KUBELET = 'context="system_u:object_r:container_file_t:s0:c1,c2"';

Deno.test("kubelet's context flag is passed through unchanged, SELinux probed or not", () => {
  for (const enabled of [true, false]) {
    assert.deepEqual(tmpfsMountOptions([KUBELET], { enabled }), [KUBELET]);
    assert.deepEqual(tmpfsMountOptions(["ro", KUBELET], { enabled }), [KUBELET]);
  }
  for (
    const flag of [
      "context=system_u:object_r:container_file_t:s0",
      'context="system_u:system_r:container_t:s0-s0:c0.c1023"',
      'context="unconfined_u:object_r:my-app_file.t:s0:c5,c1023"',
    ]
  ) assert.deepEqual(tmpfsMountOptions([flag], { enabled: true }), [flag]);
});

Deno.test("without kubelet's context the default is added only when SELinux is enabled", () => {
  assert.deepEqual(tmpfsMountOptions([], { enabled: true }), [
    `context="${DEFAULT_SELINUX_CONTEXT}"`,
  ]);
  assert.equal(DEFAULT_SELINUX_CONTEXT, "system_u:object_r:container_file_t:s0");
  assert.deepEqual(tmpfsMountOptions(["ro"], { enabled: true }), [
    'context="system_u:object_r:container_file_t:s0"',
  ]);
  assert.deepEqual(
    tmpfsMountOptions([], { enabled: true, defaultContext: "system_u:object_r:x_t:s0" }),
    ['context="system_u:object_r:x_t:s0"'],
  );
  assert.deepEqual(tmpfsMountOptions([], { enabled: false }), []);
  assert.deepEqual(tmpfsMountOptions(["ro"], { enabled: false }), []);
});

Deno.test("flags that could change the mount or inject options are refused, naming the flag", () => {
  const cases: [string[], string, RegExp][] = [
    [["exec"], "exec", /accepts only one SELinux context= flag .* and ro/],
    [["suid"], "suid", /nosuid,nodev,noexec/],
    [["dev"], "dev", /refused/],
    [["rw"], "rw", /refused/],
    [["size=1g"], "size=1g", /size and mode/],
    [["mode=0777"], "mode=0777", /refused/],
    [["fscontext=system_u:object_r:tmpfs_t:s0"], "fscontext=system_u:object_r:tmpfs_t:s0", /only/],
    [["ro,exec"], "ro,exec", /refused/],
    [[""], "", /empty/],
    [
      ["context=system_u:object_r:container_file_t:s0:c1,c2"],
      "context=system_u:object_r:container_file_t:s0:c1,c2",
      /comma outside a quoted label/,
    ],
    [
      ['context="system_u:object_r:container_file_t:s0",exec'],
      'context="system_u:object_r:container_file_t:s0",exec',
      /comma outside a quoted label/,
    ],
    [
      ["context=system_u:object_r:container_file_t:s0,exec"],
      "context=system_u:object_r:container_file_t:s0,exec",
      /comma outside/,
    ],
    [['context="a:b:c:s0" '], 'context="a:b:c:s0" ', /not an SELinux label/],
    [['context="a:b:c"'], 'context="a:b:c"', /user:role:type:level/],
    [['context="a:b:c:s0'], 'context="a:b:c:s0', /not an SELinux label/],
    [['context="a:b:c:s0"x"'], 'context="a:b:c:s0"x"', /not an SELinux label/],
    [["context="], "context=", /not an SELinux label/],
    [['context="a b:c:d:s0"'], 'context="a b:c:d:s0"', /not an SELinux label/],
    [["context=a:b:c:s0\nexec"], "context=a:b:c:s0\nexec", /not an SELinux label/],
    [[KUBELET, KUBELET], KUBELET, /only one context= flag is allowed/],
    [
      [KUBELET, "context=system_u:object_r:container_file_t:s0"],
      "context=system_u:object_r:container_file_t:s0",
      /only one context=/,
    ],
  ];
  for (const [flags, flag, reason] of cases) {
    for (const enabled of [true, false]) {
      assert.throws(() => tmpfsMountOptions(flags, { enabled }), (e: unknown) => {
        assert.ok(e instanceof MountFlagError, `${JSON.stringify(flags)}: ${e}`);
        assert.equal(e.flag, flag);
        assert.ok(e.message.startsWith(`mount flag ${JSON.stringify(flag)} is refused: `));
        assert.match(e.message, reason);
        return true;
      });
    }
  }
});

Deno.test("parseMountFlags returns the context flag verbatim and ignores ro", () => {
  assert.deepEqual(parseMountFlags([]), {});
  assert.deepEqual(parseMountFlags(["ro", "ro"]), {});
  assert.deepEqual(parseMountFlags([KUBELET, "ro"]), { context: KUBELET });
});

Deno.test("the probe says enabled only when <dir>/enforce exists", async () => {
  const dir = await Deno.makeTempDir({ prefix: "selinuxfs_test_" });
  try {
    const fs = join(dir, "selinux");
    assert.equal(selinuxfsMounted(fs), false, "no directory");
    await Deno.mkdir(fs);
    assert.equal(
      selinuxfsMounted(fs),
      false,
      "empty directory (sysfs's mount point, no selinuxfs)",
    );
    await Deno.writeTextFile(join(fs, "status"), "");
    assert.equal(selinuxfsMounted(fs), false, "no enforce file");
    await Deno.writeTextFile(join(fs, "enforce"), "1");
    assert.equal(selinuxfsMounted(fs), true, "enforcing");
    await Deno.writeTextFile(join(fs, "enforce"), "0");
    assert.equal(selinuxfsMounted(fs), true, "permissive is enabled too");
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "");
    assert.equal(selinuxfsMounted(file), false, "a file where the directory should be");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the probe reports a path it cannot inspect (not just absent) as a SelinuxProbeError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "selinuxfs_test_" });
  try {
    const loop = join(dir, "loop");
    await Deno.symlink(loop, loop);
    assert.throws(() => selinuxfsMounted(loop), (e: unknown) => {
      assert.ok(e instanceof SelinuxProbeError, String(e));
      assert.equal(e.path, join(loop, "enforce"));
      assert.ok(e.cause instanceof Error);
      assert.match(e.message, /^cannot tell whether SELinux is enabled: .*loop\/enforce: /);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the real probe answers on this host without throwing", () => {
  assert.equal(typeof selinuxfsMounted(), "boolean");
});
