import assert from "node:assert/strict";
import { join } from "node:path";
import {
  heapLimitBytes,
  heapLimitWarning,
  MemoryLimitError,
  readMemoryLimit,
} from "./memory_limit.ts";

const MiB = 1024 * 1024;

/** A file-system root holding `files` (path → content). */
async function fixture(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "memory-limit-" });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(root, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
  return root;
}

Deno.test("cgroup v2: the process's own memory.max, 'max' meaning none", async () => {
  const root = await fixture({
    "proc/self/cgroup": "0::/kubepods/pod1/c1\n",
    "sys/fs/cgroup/kubepods/pod1/c1/memory.max": "402653184\n",
    "sys/fs/cgroup/memory.max": "max\n",
  });
  try {
    assert.equal(readMemoryLimit(root), 384 * MiB);
    await Deno.writeTextFile(join(root, "sys/fs/cgroup/kubepods/pod1/c1/memory.max"), "max\n");
    assert.equal(readMemoryLimit(root), undefined);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cgroup namespace: the mount root's file when the own path is not visible", async () => {
  const root = await fixture({
    "proc/self/cgroup": "0::/\n",
    "sys/fs/cgroup/memory.max": "268435456\n",
  });
  try {
    assert.equal(readMemoryLimit(root), 256 * MiB);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cgroup v1: the memory controller's own cgroup, then the mount root; PAGE_COUNTER_MAX is none", async () => {
  const root = await fixture({
    "proc/self/cgroup": "5:devices:/x\n4:memory:/docker/abc\n0::/\n",
    "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "402653184\n",
    "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
  });
  try {
    assert.equal(readMemoryLimit(root), 384 * MiB);
    await Deno.remove(join(root, "sys/fs/cgroup/memory/docker"), { recursive: true });
    assert.equal(readMemoryLimit(root), undefined, "the root's 'unlimited'");
    await Deno.writeTextFile(
      join(root, "sys/fs/cgroup/memory/memory.limit_in_bytes"),
      "134217728\n",
    );
    assert.equal(readMemoryLimit(root), 128 * MiB);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("no cgroup files is no limit; a file with something else is a MemoryLimitError", async () => {
  const empty = await fixture({});
  const bad = await fixture({ "sys/fs/cgroup/memory.max": "lots\n" });
  try {
    assert.equal(readMemoryLimit(empty), undefined);
    assert.throws(
      () => readMemoryLimit(bad),
      (error: unknown) =>
        error instanceof MemoryLimitError && error.path.endsWith("sys/fs/cgroup/memory.max") &&
        /expected a number of bytes or "max", got "lots"/.test(error.message),
    );
  } finally {
    await Deno.remove(empty, { recursive: true });
    await Deno.remove(bad, { recursive: true });
  }
});

Deno.test("the warning names both limits when the heap does not fit the container", () => {
  assert.equal(heapLimitWarning(384 * MiB, 150 * MiB), undefined);
  assert.equal(heapLimitWarning(undefined, 4192 * MiB), undefined, "no container limit");
  assert.equal(
    heapLimitWarning(384 * MiB, 4192 * MiB),
    "V8 heap limit 4192 MiB is not below the container memory limit 384 MiB: set DENO_V8_FLAGS " +
      "(or deno compile --v8-flags) from heap_flags.ts",
  );
});

Deno.test("the heap limit follows DENO_V8_FLAGS (old space + 3 semi-spaces)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { heapLimitBytes } from "${new URL("./memory_limit.ts", import.meta.url)}";` +
      "console.log(heapLimitBytes() / 1048576)",
    ],
    env: { DENO_V8_FLAGS: "--max-old-space-size=144,--max-semi-space-size=2" },
  }).output();
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "150");
  assert.ok(heapLimitBytes() > 150 * MiB, "this test process runs without the flags");
});
