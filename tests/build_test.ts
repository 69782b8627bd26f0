import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { denortZipName, findDenort } from "../scripts/denort.ts";
import { runSelfTest, SelfTestError } from "../scripts/artefact_check.ts";
import { compileArgs, TARGETS } from "../scripts/build.ts";
import { parseMemoryQuantity, v8FlagsFor } from "../cli/heap_flags.ts";
import { runCommand } from "./harness/process.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FIXTURE = "scripts/testdata/fixture_main.ts";
// A closed loopback port: the denort download probe fails at once, as it does offline.
const NO_NETWORK = "http://127.0.0.1:9";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function deno(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** Runs scripts/build.ts with no denort reachable (empty cache dir, DENORT_BIN empty, no network). */
async function buildOffline(dir: string, args: string[]): Promise<Run> {
  return await deno([
    "run",
    "-A",
    "scripts/build.ts",
    "--out-dir",
    join(dir, "dist"),
    "--deno-dir",
    join(dir, "deno-dir"),
    "--denort-download-base",
    NO_NETWORK,
    ...args,
  ], { DENORT_BIN: "" });
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("build: without denort, --allow-bundle-fallback bundles and smoke-runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "build-test-" });
  try {
    const result = await buildOffline(dir, [
      "--allow-bundle-fallback",
      "--entry",
      `fixture=${FIXTURE}`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /denort is not available/);
    assert.match(result.stderr, /DENORT_BIN: not set/);
    assert.match(result.stderr, /fixture self-test ok/);
    const bundle = join(dir, "dist", "fixture.js");
    const run = await deno(["run", "-A", "--no-config", bundle, "--self-test"]);
    assert.equal(run.stdout.trim(), "fixture self-test ok");
    const manifest = JSON.parse(await Deno.readTextFile(join(dir, "dist", "build.json"))) as {
      artefacts: { name: string; kind: string }[];
    };
    assert.deepEqual(manifest.artefacts.map((a) => [a.name, a.kind]), [["fixture", "bundle"]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: without denort and without the flag, bundles are made but the build fails", async () => {
  const dir = await Deno.makeTempDir({ prefix: "build-test-" });
  try {
    const result = await buildOffline(dir, ["--entry", `fixture=${FIXTURE}`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /pass --allow-bundle-fallback to accept them/);
    assert.ok(await exists(join(dir, "dist", "fixture.js")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: a bundle that is not the program, or never answers, is rejected", async () => {
  const dir = await Deno.makeTempDir({ prefix: "build-test-" });
  try {
    const wrong = await buildOffline(dir, [
      "--allow-bundle-fallback",
      "--entry",
      "fixture=scripts/testdata/not_the_program.ts",
    ]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /is not the program: expected a line "<program> self-test ok"/);
    assert.match(wrong.stderr, /hello from something else/);

    const hangs = await buildOffline(dir, [
      "--allow-bundle-fallback",
      "--self-test-timeout-ms",
      "1500",
      "--entry",
      "fixture=scripts/testdata/hangs.ts",
    ]);
    assert.equal(hangs.code, 1);
    assert.match(hangs.stderr, /no answer within 1500 ms/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: DENORT_BIN pointing at deno yields a REPL binary, which is rejected and removed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "build-test-" });
  try {
    const result = await deno([
      "run",
      "-A",
      "scripts/build.ts",
      "--out-dir",
      join(dir, "dist"),
      "--entry",
      `fixture=${FIXTURE}`,
      "--allow-bundle-fallback",
    ], { DENORT_BIN: Deno.execPath() });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /\(env\)/);
    assert.match(result.stderr, /is not the program/);
    assert.match(result.stderr, /not at deno \(which yields a REPL\)/);
    assert.equal(await exists(join(dir, "dist", "fixture")), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: a missing entry point is named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "build-test-" });
  try {
    const result = await buildOffline(dir, ["--entry", "ghost=scripts/testdata/ghost.ts"]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /entry point scripts\/testdata\/ghost\.ts \(target ghost\) does not exist/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: bad arguments exit 2 with usage", async () => {
  const result = await deno(["run", "-A", "scripts/build.ts", "--only", "nope"]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /unknown target "nope"; known: csi, webhook/);
  assert.match(result.stderr, /usage: deno task build/);
});

Deno.test("denort lookup: DENORT_BIN, then Deno's cache, then the network", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denort-test-" });
  try {
    const target = "x86_64-unknown-linux-gnu";
    const base = { version: "2.8.3", target, downloadBase: NO_NETWORK, probeTimeoutMs: 2_000 };
    const missing = await findDenort({ ...base, denortBin: join(dir, "nope"), denoDir: dir });
    assert.equal(missing.found, false);
    assert.equal(missing.tried.length, 3);
    assert.match(missing.tried[0], /nope: no such file/);
    assert.match(missing.tried[1], /not in Deno's cache/);
    assert.match(missing.tried[2], /127\.0\.0\.1:9\/release\/v2\.8\.3\/denort-x86_64/);

    const zip = join(dir, "dl", "release", "v2.8.3", denortZipName(target));
    await Deno.mkdir(join(dir, "dl", "release", "v2.8.3"), { recursive: true });
    await Deno.writeFile(zip, new Uint8Array([0x50, 0x4b]));
    const cached = await findDenort({ ...base, denortBin: "", denoDir: dir });
    assert.deepEqual(cached.found && cached.source, { kind: "cache", path: zip });

    const fromEnv = await findDenort({ ...base, denortBin: zip, denoDir: dir });
    assert.deepEqual(fromEnv.found && fromEnv.source, { kind: "env", path: zip });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("self-test: the deno binary itself (what a wrong DENORT_BIN produces) is not accepted", async () => {
  // The real deno binary with no script is exactly what a wrong DENORT_BIN produces.
  await assert.rejects(
    () => runSelfTest([Deno.execPath()], "csi", 10_000),
    (error: unknown) => error instanceof SelfTestError && /not the program/.test(error.message),
  );
});

Deno.test("Containerfiles build the targets scripts/build.ts knows, on pinned bases", async () => {
  const denoVersion = /DENO_VERSION=(\S+)/.exec(await Deno.readTextFile(`${ROOT}scripts/deno`))
    ?.[1];
  assert.ok(denoVersion);
  for (
    const [file, names] of [["csi", ["csi"]], ["webhook", ["webhook"]], [
      "workloads",
      ["server", "client"],
    ]] as const
  ) {
    const text = await Deno.readTextFile(`${ROOT}images/${file}.Containerfile`);
    assert.match(text, new RegExp(`^ARG DENO_IMAGE=denoland/deno:${denoVersion}$`, "m"));
    assert.match(text, /^ARG RUNTIME_IMAGE=gcr\.io\/distroless\/cc-debian12:nonroot$/m);
    assert.match(
      text,
      new RegExp(
        `scripts/build\\.ts --only ${names.join(",")} --out-dir /out --image-root /rootfs ` +
          "\\$\\{BUILD_FLAGS\\}$",
        "m",
      ),
    );
    // Release builds compile: the bundle fallback is only ever a build argument.
    assert.match(text, /^ARG BUILD_FLAGS=$/m);
    assert.doesNotMatch(text, /^[^#]*allow-bundle-fallback/m);
    assert.match(text, /^COPY --from=build \/rootfs\/ \/$/m);
    assert.match(text, /^COPY \. \.$/m);
    const entrypoint = /^ENTRYPOINT \["(\S+)"\]$/m.exec(text)?.[1];
    const output = TARGETS.find((t) => t.name === names[0])?.output;
    assert.equal(entrypoint, `/usr/local/bin/${output}`);
  }
});

const entryPointsExist = (await exists(`${ROOT}csi/main.ts`)) &&
  (await exists(`${ROOT}webhook/main.ts`));

Deno.test({
  name: "deno task build --allow-bundle-fallback produces and smoke-runs both programs",
  ignore: !entryPointsExist,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "build-test-" });
    try {
      const result = await deno([
        "task",
        "build",
        "--allow-bundle-fallback",
        "--out-dir",
        join(dir, "dist"),
      ]);
      assert.equal(result.code, 0, result.stderr);
      const manifest = JSON.parse(await Deno.readTextFile(join(dir, "dist", "build.json"))) as {
        artefacts: { name: string; path: string; selfTest: string }[];
      };
      assert.deepEqual(manifest.artefacts.map((a) => a.name), ["csi", "webhook"]);
      for (const artefact of manifest.artefacts) {
        const command = artefact.path.endsWith(".js")
          ? [Deno.execPath(), "run", "-A", "--no-config", artefact.path]
          : [artefact.path];
        const { line } = await runSelfTest(command, artefact.name);
        assert.equal(line, artefact.selfTest);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--image-root: a bundle becomes /usr/local/bin/<program> run by the Deno beside it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "image-root-" });
  try {
    const result = await deno([
      "run",
      "-A",
      `${ROOT}scripts/build.ts`,
      "--allow-bundle-fallback",
      "--only",
      "client",
      "--out-dir",
      join(dir, "out"),
      "--image-root",
      join(dir, "rootfs"),
    ]);
    assert.equal(result.code, 0, result.stderr);
    const manifest = JSON.parse(await Deno.readTextFile(join(dir, "out", "build.json"))) as {
      artefacts: { kind: string }[];
    };
    const script = join(dir, "rootfs/usr/local/bin/spire-cacerts-client");
    assert.ok(((await Deno.stat(script)).mode! & 0o111) !== 0, "executable");
    if (manifest.artefacts[0].kind === "bundle") {
      const text = await Deno.readTextFile(script);
      assert.ok(text.startsWith("#!/usr/local/bin/deno -A\n"), text.slice(0, 40));
      const copy = join(dir, "rootfs/usr/local/bin/deno");
      assert.equal((await Deno.stat(copy)).size, (await Deno.stat(Deno.execPath())).size);
      // What the kernel runs for `/usr/local/bin/spire-cacerts-client --version`.
      const version = await runCommand([copy, "-A", script, "--version"]);
      assert.equal(version.code, 0, version.stderr);
      assert.match(version.stdout, /spire-cacerts-client/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function run(cmd: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await runCommand(cmd);
  return { code, out: stdout + stderr };
}

Deno.test({
  name: "csi image: copy_mount_tools.sh gives mount and umount that work where only glibc is",
  // chroot and mount need root; CI runs as root.
  ignore: Deno.uid() !== 0 && Deno.env.get("CI") !== "true",
  fn: async () => {
    const containerfile = await Deno.readTextFile(`${ROOT}images/csi.Containerfile`);
    assert.match(containerfile, /^RUN sh \/copy_mount_tools\.sh \/out$/m);
    assert.match(containerfile, /^COPY --from=mount-tools \/out\/ \/$/m);
    const root = await Deno.makeTempDir({ prefix: "mount-tools-" });
    const proc = join(root, "proc");
    const volume = join(root, "volume");
    try {
      const copied = await run(["sh", `${ROOT}images/copy_mount_tools.sh`, root]);
      assert.equal(copied.code, 0, copied.out);
      // What the distroless base brings: the dynamic loader and libc, nothing else.
      const ldd = await run(["ldd", join(root, "usr/bin/mount")]);
      for (const line of ldd.out.split("\n")) {
        const path = /(\/\S*(?:libc\.so\.6|ld-linux\S*\.so\.\d+))/.exec(line)?.[1];
        if (!path) continue;
        const dest = path.includes("ld-linux")
          ? join(root, path)
          : join(root, "usr", path.replace(/^\/usr/, ""));
        await Deno.mkdir(join(dest, ".."), { recursive: true });
        await Deno.copyFile(await Deno.realPath(path), dest);
      }
      await Deno.mkdir(proc);
      await Deno.mkdir(volume);
      assert.equal((await run(["mount", "-t", "proc", "proc", proc])).code, 0);
      try {
        const mounted = await run([
          "chroot",
          root,
          "/usr/bin/mount",
          "-t",
          "tmpfs",
          "-o",
          "size=1m,mode=0755",
          "tmpfs",
          "/volume",
        ]);
        assert.equal(mounted.code, 0, mounted.out);
        const mountinfo = await Deno.readTextFile("/proc/self/mountinfo");
        assert.match(mountinfo, new RegExp(` ${volume} .* - tmpfs `));
        const unmounted = await run(["chroot", root, "/usr/bin/umount", "/volume"]);
        assert.equal(unmounted.code, 0, unmounted.out);
        assert.doesNotMatch(
          await Deno.readTextFile("/proc/self/mountinfo"),
          new RegExp(` ${volume} `),
        );
      } finally {
        await run(["umount", volume]);
        await run(["umount", proc]);
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("compiled binaries, images and manifests size the V8 heap from the same memory limit", async () => {
  const { loadAllYaml } = await import("@kubernetes/client-node");
  const sized = [
    { target: "webhook", manifest: "webhook/deployment.yaml", container: "webhook" },
    { target: "csi", manifest: "csi/daemonset.yaml", container: "csi-driver" },
  ];
  for (const { target, manifest, container } of sized) {
    const t = TARGETS.find((t) => t.name === target)!;
    const [owner] = loadAllYaml(await Deno.readTextFile(`${ROOT}manifests/${manifest}`)) as {
      spec: {
        template: {
          spec: {
            containers: {
              name: string;
              env?: { name: string; value?: string }[];
              resources: { limits: { memory: string } };
            }[];
          };
        };
      };
    }[];
    const c = owner.spec.template.spec.containers.find((c) => c.name === container)!;
    assert.equal(t.memoryLimit, c.resources.limits.memory, `${target}: the manifest's limit`);
    const flags = v8FlagsFor(parseMemoryQuantity(c.resources.limits.memory));
    // The binary: deno compile carries the flags (it ignores DENO_V8_FLAGS at run time).
    const args = compileArgs(t, "/out/bin");
    assert.deepEqual(args, [
      "compile",
      "--allow-all",
      `--v8-flags=${flags}`,
      "--output",
      "/out/bin",
      t.entry,
    ]);
    // The image's default for a bundle, and the manifest's own value.
    const file = await Deno.readTextFile(`${ROOT}images/${target}.Containerfile`);
    assert.equal(/^ENV DENO_V8_FLAGS=(\S+)$/m.exec(file)?.[1], flags, `${target} Containerfile`);
    assert.equal(c.env?.find((e) => e.name === "DENO_V8_FLAGS")?.value, flags);
  }
  // A target without a limit compiles with V8's defaults.
  assert.deepEqual(compileArgs({ name: "x", entry: "x.ts", output: "x" }, "o"), [
    "compile",
    "--allow-all",
    "--output",
    "o",
    "x.ts",
  ]);
});

Deno.test("the flags compileArgs bakes in are flags V8 accepts, and size the heap", async () => {
  const t = TARGETS.find((t) => t.name === "webhook")!;
  const flag = compileArgs(t, "o").find((a) => a.startsWith("--v8-flags="))!;
  const out = await deno([
    "eval",
    flag,
    'import v8 from "node:v8"; console.log(v8.getHeapStatistics().heap_size_limit / 1048576)',
  ]);
  assert.equal(out.code, 0, out.stderr);
  // old space + 3 semi-spaces: 144 + 3 × 2 MiB for the 384Mi limit.
  assert.equal(out.stdout.trim(), "150");
});
