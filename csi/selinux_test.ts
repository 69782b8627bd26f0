import assert from "node:assert/strict";
import { join } from "node:path";
import {
  DEFAULT_SELINUX_CONTEXT,
  kernelHasSelinux,
  MountFlagError,
  parseMountFlags,
  prepareSelinux,
  type PrepareSelinuxOptions,
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

/** A kernel's /proc/filesystems, with or without selinuxfs. */
function filesystems(selinux: boolean): string {
  return "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n" +
    (selinux ? "nodev\tselinuxfs\n" : "") + "\text4\nnodev\toverlay\n";
}

interface Node {
  /** prepareSelinux's options on the node's temporary files, with a recording fake mount. */
  options: PrepareSelinuxOptions;
  /** Directories the fake mount was called with. */
  mounts: string[];
  /** The log lines, as `level: message`. */
  lines: string[];
  /** The selinuxfs mount point. */
  selinuxfs: string;
}

/**
 * A node in a temporary directory: its `/proc/filesystems` (with `selinuxfs` when `kernel`),
 * `/sys/fs/selinux` (the empty sysfs mount point when `kernel`, with `enforce` when `mounted`) and
 * `/etc/selinux/config` (when `config`). The fake mount writes `enforce`, as a real one shows it,
 * or fails with `mountFails`.
 */
async function node(
  dir: string,
  { kernel, mounted = false, config = true, mountFails }: {
    kernel: boolean;
    mounted?: boolean;
    config?: boolean;
    mountFails?: Error;
  },
): Promise<Node> {
  await Deno.mkdir(dir, { recursive: true });
  const procFilesystems = join(dir, "filesystems");
  await Deno.writeTextFile(procFilesystems, filesystems(kernel));
  const selinuxfs = join(dir, "selinux");
  if (kernel || mounted) await Deno.mkdir(selinuxfs);
  if (mounted) await Deno.writeTextFile(join(selinuxfs, "enforce"), "1");
  const selinuxConfig = join(dir, "config");
  if (config) await Deno.writeTextFile(selinuxConfig, "");
  const mounts: string[] = [];
  const lines: string[] = [];
  return {
    mounts,
    lines,
    selinuxfs,
    options: {
      procFilesystems,
      selinuxfs,
      selinuxConfig,
      mountSelinuxfs: async (target) => {
        mounts.push(target);
        if (mountFails) throw mountFails;
        await Deno.writeTextFile(join(target, "enforce"), "1");
      },
      logger: {
        info: (msg) => lines.push(`info: ${msg}`),
        warn: (msg) => lines.push(`warn: ${msg}`),
      },
    },
  };
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "selinux_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("kernelHasSelinux reads the selinuxfs type in /proc/filesystems", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "filesystems");
    await Deno.writeTextFile(path, filesystems(true));
    assert.equal(kernelHasSelinux(path), true);
    await Deno.writeTextFile(path, filesystems(false));
    assert.equal(kernelHasSelinux(path), false);
    await Deno.writeTextFile(path, "nodev\tselinuxfsx\nnodev\tnotselinuxfs\n");
    assert.equal(kernelHasSelinux(path), false, "only the whole type name counts");
    await Deno.writeTextFile(path, "\tselinuxfs");
    assert.equal(kernelHasSelinux(path), true, "no nodev flag, no final newline");
    assert.equal(kernelHasSelinux(join(dir, "absent")), false, "no /proc");
    assert.throws(() => kernelHasSelinux(dir), SelinuxProbeError, "a directory is not a list");
  });
});

Deno.test("a kernel without selinuxfs: nothing is mounted and no context is added", async () => {
  await inTempDir(async (dir) => {
    const n = await node(dir, { kernel: false, config: false });
    const enabled = await prepareSelinux(n.options);
    assert.equal(enabled, false);
    assert.deepEqual(n.mounts, [], "no mount attempted");
    assert.deepEqual(n.lines, [], "nothing to warn about");
    assert.deepEqual(tmpfsMountOptions([], { enabled }), []);
  });
});

Deno.test("a kernel with selinuxfs not mounted here: it is mounted, then the context is added", async () => {
  await inTempDir(async (dir) => {
    const n = await node(dir, { kernel: true });
    const enabled = await prepareSelinux(n.options);
    assert.equal(enabled, true);
    assert.deepEqual(n.mounts, [n.selinuxfs], "mounted once, at the selinuxfs mount point");
    assert.equal(selinuxfsMounted(n.selinuxfs), true);
    assert.deepEqual(n.lines, ["info: mounted the SELinux file system for mount(8)"]);
    assert.deepEqual(tmpfsMountOptions([], { enabled }), [`context="${DEFAULT_SELINUX_CONTEXT}"`]);
  });
});

Deno.test("selinuxfs already mounted: nothing is mounted and the context is added", async () => {
  await inTempDir(async (dir) => {
    for (const kernel of [true, false]) {
      const n = await node(join(dir, String(kernel)), { kernel, mounted: true });
      const enabled = await prepareSelinux(n.options);
      assert.equal(enabled, true, `kernel lists selinuxfs: ${kernel}`);
      assert.deepEqual(n.mounts, [], "no mount attempted");
      assert.deepEqual(n.lines, []);
      assert.deepEqual(tmpfsMountOptions([], { enabled }), [
        `context="${DEFAULT_SELINUX_CONTEXT}"`,
      ]);
    }
  });
});

Deno.test("a failed selinuxfs mount is a warning naming the consequence; SELinux stays enabled", async () => {
  await inTempDir(async (dir) => {
    const n = await node(dir, { kernel: true, mountFails: new Error("mount: permission denied") });
    assert.equal(await prepareSelinux(n.options), true);
    assert.deepEqual(n.mounts, [n.selinuxfs]);
    assert.equal(n.lines.length, 1, n.lines.join("\n"));
    assert.match(n.lines[0], /^warn: SELinux is enabled but selinuxfs could not be mounted at /);
    assert.match(n.lines[0], /mount\(8\) may drop the context= option/);
    assert.match(n.lines[0], /pods with confined SELinux labels may then not read their volumes$/);
  });
});

Deno.test("a mount that shows no enforce file, or no mount call, is warned about too", async () => {
  await inTempDir(async (dir) => {
    const quiet = await node(join(dir, "a"), { kernel: true });
    quiet.options.mountSelinuxfs = (target) => (quiet.mounts.push(target), Promise.resolve());
    assert.equal(await prepareSelinux(quiet.options), true);
    assert.deepEqual(quiet.mounts, [quiet.selinuxfs]);
    assert.equal(quiet.lines.length, 1);
    assert.match(quiet.lines[0], /^warn: .*enforce is missing; mount\(8\) may drop/);

    const none = await node(join(dir, "b"), { kernel: true });
    delete none.options.mountSelinuxfs;
    assert.equal(await prepareSelinux(none.options), true);
    assert.equal(none.lines.length, 1);
    assert.match(none.lines[0], /^warn: SELinux is enabled but .* is not mounted; mount\(8\)/);
  });
});

Deno.test("an SELinux node without /etc/selinux/config is warned about (libselinux says disabled)", async () => {
  await inTempDir(async (dir) => {
    const n = await node(dir, { kernel: true, mounted: true, config: false });
    assert.equal(await prepareSelinux(n.options), true);
    assert.deepEqual(n.mounts, []);
    assert.equal(n.lines.length, 1);
    assert.match(n.lines[0], /^warn: SELinux is enabled but .*config is missing, so libselinux /);
    assert.match(n.lines[0], /may drop the context= option/);
  });
});

Deno.test({
  name: "on this host (no SELinux kernel) the real paths mount nothing and add no context",
  ignore: kernelHasSelinux() || selinuxfsMounted(),
  fn: async () => {
    const mounts: string[] = [];
    const lines: string[] = [];
    const enabled = await prepareSelinux({
      mountSelinuxfs: (dir) => (mounts.push(dir), Promise.resolve()),
      logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m) },
    });
    assert.equal(enabled, false);
    assert.deepEqual(mounts, []);
    assert.deepEqual(lines, []);
  },
});
