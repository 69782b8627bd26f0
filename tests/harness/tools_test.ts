import assert from "node:assert/strict";
import { join } from "node:path";
import {
  BUILD_COMMAND,
  needsTools,
  runSpiffeHelper,
  startKubeApiServer,
  startSpire,
  ToolMissingError,
  toolPath,
  toolsBinDir,
} from "./mod.ts";

/** Runs `fn` with the given environment variables set (undefined = unset), then restores them. */
async function withEnv(vars: Record<string, string | undefined>, fn: () => void | Promise<void>) {
  const saved = Object.fromEntries(Object.keys(vars).map((key) => [key, Deno.env.get(key)]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) Deno.env.delete(key);
      else Deno.env.set(key, value);
    }
  };
  apply(vars);
  try {
    await fn();
  } finally {
    apply(saved);
  }
}

Deno.test("toolPath finds executables under SPIRE_CACERTS_TOOLS_DIR/bin", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(root, "bin"));
    await Deno.writeTextFile(join(root, "bin", "etcd"), "#!/bin/sh\n", { mode: 0o755 });
    await Deno.writeTextFile(join(root, "bin", "kubectl"), "not executable", { mode: 0o644 });
    await withEnv({ SPIRE_CACERTS_TOOLS_DIR: root }, () => {
      assert.equal(toolsBinDir(), join(root, "bin"));
      assert.equal(toolPath("etcd"), join(root, "bin", "etcd"));
      for (const name of ["kubectl", "csc"] as const) {
        let error: unknown;
        try {
          toolPath(name);
        } catch (caught) {
          error = caught;
        }
        assert.ok(error instanceof ToolMissingError, `toolPath(${name}) threw ${error}`);
        assert.equal(error.tool, name);
        assert.match(error.message, new RegExp(`^${name} is not built`));
        assert.ok(error.message.includes(join(root, "bin", name)));
        assert.ok(error.message.includes(BUILD_COMMAND));
      }
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("toolsBinDir defaults to ~/.cache/spire-cacerts/tools/bin", async () => {
  await withEnv({ SPIRE_CACERTS_TOOLS_DIR: undefined, HOME: "/home/someone" }, () => {
    assert.equal(toolsBinDir(), "/home/someone/.cache/spire-cacerts/tools/bin");
  });
});

Deno.test("needsTools ignores locally when a tool is missing, never in CI", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(root, "bin"));
    await Deno.writeTextFile(join(root, "bin", "etcd"), "#!/bin/sh\n", { mode: 0o755 });
    await withEnv({ SPIRE_CACERTS_TOOLS_DIR: root, CI: undefined }, () => {
      assert.deepEqual(needsTools(["etcd"]), { ignore: false });
      assert.deepEqual(needsTools(["etcd", "kube-apiserver"]), { ignore: true });
    });
    for (const ci of ["true", "TRUE", "1"]) {
      await withEnv({ SPIRE_CACERTS_TOOLS_DIR: root, CI: ci }, () => {
        assert.deepEqual(needsTools(["etcd", "kube-apiserver"]), { ignore: false });
      });
    }
    await withEnv({ SPIRE_CACERTS_TOOLS_DIR: root, CI: "false" }, () => {
      assert.deepEqual(needsTools(["kube-apiserver"]), { ignore: true });
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("starters name the missing binary and the build command", async () => {
  const root = await Deno.makeTempDir();
  try {
    await withEnv({ SPIRE_CACERTS_TOOLS_DIR: root }, async () => {
      const cases: [string, () => Promise<unknown>][] = [
        ["etcd", () => startKubeApiServer()],
        ["spire-server", () => startSpire()],
        [
          "spiffe-helper",
          () => runSpiffeHelper({ agentSocketPath: join(root, "agent.sock"), certDir: root }),
        ],
      ];
      for (const [tool, start] of cases) {
        await assert.rejects(start, (error: unknown) => {
          assert.ok(error instanceof ToolMissingError);
          assert.equal(error.tool, tool);
          assert.ok(error.message.includes(BUILD_COMMAND));
          return true;
        });
      }
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
