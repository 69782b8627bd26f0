/**
 * `deno task build`: compiles the CSI driver and the webhook into single binaries under `dist/`
 * and proves each one is the program by running it with `--self-test`.
 *
 * `deno compile` needs the `denort` runtime (see `denort.ts`). Where none can be had, the build
 * says so, bundles each entry point with `deno bundle` into `dist/<name>.js`, smoke-runs the
 * bundles with `deno run -A`, and still exits non-zero unless `--allow-bundle-fallback` accepts
 * that result. A result that is not the program (a `DENORT_BIN` pointing at `deno` yields a REPL)
 * is always rejected.
 *
 * ```sh
 * ./scripts/deno task build                          # binaries or failure
 * ./scripts/deno task build --allow-bundle-fallback  # binaries, else bundles
 * ./scripts/deno task build --only csi --out-dir /out
 * ./scripts/deno task build --only csi --out-dir /out --image-root /rootfs   # what an image copies
 * ```
 *
 * `--image-root DIR` also lays out, under `DIR`, exactly what a runtime image copies (the
 * Containerfiles `COPY --from=build /rootfs/ /`): each program at `/usr/local/bin/<output>`. A
 * binary is copied as it is. A bundle goes to `/usr/local/lib/spire-cacerts/<output>.js`, next to
 * a copy of the Deno that built and smoke-ran it at `/usr/local/bin/deno`, and
 * `/usr/local/bin/<output>` becomes a three-line script starting `#!/usr/local/bin/deno -A` that
 * imports the bundle's `main` and exits with its code. So `/usr/local/bin/<output> --flags` works
 * the same way with either kind, on a base image without a shell, and the manifests'
 * `command`/`args` need no variant. (Deno reads a file without an extension as TypeScript: a
 * bundle run that way is transpiled at every start, which took the driver from 190 to 305 MB
 * peak resident memory with an empty cache; the script is tiny and the bundle stays `.js`.) Every
 * target's entry point therefore exports `main(args: string[]): Promise<number>`.
 *
 * A compiled binary ignores `DENO_V8_FLAGS`, so each program's V8 heap sizes are baked in with
 * `deno compile --v8-flags=…`: the function of its container's memory limit
 * (`cli/heap_flags.ts`; the manifests set the same flags as `DENO_V8_FLAGS` for bundles, and
 * tests/build_test.ts checks that the limits here are the manifests' own).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, relative, resolve } from "node:path";
import { type DenortLookup, findDenort } from "./denort.ts";
import { runSelfTest, SelfTestError } from "./artefact_check.ts";
import { parseMemoryQuantity, v8FlagsFor } from "../cli/heap_flags.ts";

/** One program the build produces. */
export interface BuildTarget {
  /** Short name; the program's self-test line must contain it. */
  name: string;
  /** Entry point, relative to the repository root or absolute. */
  entry: string;
  /** File name of the compiled binary (the bundle is `<output>.js`). */
  output: string;
  /**
   * `limits.memory` of the program's container in the manifests, e.g. `384Mi`: the binary's V8
   * heap is sized from it ({@link compileArgs}). Unset: V8's defaults.
   */
  memoryLimit?: string;
}

/** Programs built by default, and the optional example workloads (`--only server,client`). */
export const TARGETS: readonly BuildTarget[] = [
  { name: "csi", entry: "csi/main.ts", output: "spire-cacerts-csi", memoryLimit: "512Mi" },
  {
    name: "webhook",
    entry: "webhook/main.ts",
    output: "spire-cacerts-webhook",
    memoryLimit: "384Mi",
  },
  { name: "server", entry: "workloads/server.ts", output: "spire-cacerts-server" },
  { name: "client", entry: "workloads/client.ts", output: "spire-cacerts-client" },
];

/** Names built when `--only` is not given. */
export const DEFAULT_TARGETS: readonly string[] = ["csi", "webhook"];

/** A built and verified artefact. */
export interface Artefact {
  /** Target name. */
  name: string;
  /** `binary` from `deno compile`, `bundle` from the fallback. */
  kind: "binary" | "bundle";
  /** Path of the file. */
  path: string;
  /** The self-test line it printed. */
  selfTest: string;
}

/** Thrown for a bad command line. */
export class BuildUsageError extends Error {
  /** @param message what is wrong with the arguments */
  constructor(message: string) {
    super(message);
    this.name = "BuildUsageError";
  }
}

/** Thrown when a build step fails; the message says which and why. */
export class BuildError extends Error {
  /** @param message what failed */
  constructor(message: string) {
    super(message);
    this.name = "BuildError";
  }
}

const ROOT = resolve(new URL("..", import.meta.url).pathname);

function log(message: string): void {
  console.error(`build: ${message}`);
}

// Compiled programs get every permission: a binary's permissions are fixed at compile time and an
// unexpected permission prompt in a non-interactive container is a crash. The container (non-root,
// read-only root filesystem, RBAC) confines them instead.
const PERMISSIONS = ["--allow-all"];

async function run(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new BuildError(
      `\`deno ${args.join(" ")}\` exited ${out.code}:\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

function parseTargets(only: string | undefined, entries: string[]): BuildTarget[] {
  if (entries.length > 0) {
    return entries.map((spec) => {
      const eq = spec.indexOf("=");
      if (eq <= 0 || eq === spec.length - 1) {
        throw new BuildUsageError(`--entry expects name=path, got "${spec}"`);
      }
      const name = spec.slice(0, eq);
      return { name, entry: spec.slice(eq + 1), output: name };
    });
  }
  const names = only ? only.split(",").map((s) => s.trim()).filter(Boolean) : DEFAULT_TARGETS;
  return names.map((name) => {
    const target = TARGETS.find((t) => t.name === name);
    if (!target) {
      throw new BuildUsageError(
        `unknown target "${name}"; known: ${TARGETS.map((t) => t.name).join(", ")}`,
      );
    }
    return target;
  });
}

/**
 * The `deno compile` arguments for `target`: every permission, and the V8 heap flags of its
 * memory limit (a compiled binary does not read `DENO_V8_FLAGS`).
 *
 * @param target what to compile
 * @param path the binary to write
 */
export function compileArgs(target: BuildTarget, path: string): string[] {
  const v8 = target.memoryLimit === undefined
    ? []
    : [`--v8-flags=${v8FlagsFor(parseMemoryQuantity(target.memoryLimit))}`];
  return ["compile", ...PERMISSIONS, ...v8, "--output", path, target.entry];
}

async function compile(
  target: BuildTarget,
  outDir: string,
  timeoutMs: number,
): Promise<Artefact> {
  const path = join(outDir, target.output);
  log(`compiling ${target.entry} -> ${relative(ROOT, path) || path}`);
  await run(compileArgs(target, path));
  try {
    const { line } = await runSelfTest([path], target.name, timeoutMs);
    log(`${relative(ROOT, path)}: ${line}`);
    return { name: target.name, kind: "binary", path, selfTest: line };
  } catch (error) {
    await Deno.remove(path).catch(() => {});
    if (error instanceof SelfTestError) {
      throw new BuildError(
        `${error.message}\nThe compiled binary was removed. If DENORT_BIN is set, it must point at ` +
          `denort ${Deno.version.deno} for ${Deno.build.target}, not at deno (which yields a REPL).`,
      );
    }
    throw error;
  }
}

async function bundle(
  target: BuildTarget,
  outDir: string,
  timeoutMs: number,
): Promise<Artefact> {
  const path = join(outDir, `${target.output}.js`);
  log(`bundling ${target.entry} -> ${relative(ROOT, path) || path}`);
  await run(["bundle", "--platform", "deno", "--output", path, target.entry]);
  try {
    const { line } = await runSelfTest(
      [Deno.execPath(), "run", ...PERMISSIONS, "--no-config", path],
      target.name,
      timeoutMs,
    );
    log(`${relative(ROOT, path)}: ${line}`);
    return { name: target.name, kind: "bundle", path, selfTest: line };
  } catch (error) {
    if (error instanceof SelfTestError) throw new BuildError(error.message);
    throw error;
  }
}

/** Where a bundle's interpreter lives in an image laid out by {@link layOutImageRoot}. */
export const IMAGE_DENO_PATH = "/usr/local/bin/deno";
/** Where the bundles live in an image laid out by {@link layOutImageRoot}. */
export const IMAGE_BUNDLE_DIR = "/usr/local/lib/spire-cacerts";

/**
 * Lays out under `root` what a runtime image copies: every artefact at `/usr/local/bin/<output>`;
 * for bundles, a script there that runs `/usr/local/lib/spire-cacerts/<output>.js` with the Deno
 * copied to `/usr/local/bin/deno` (this one). Each script is self-tested the way the kernel
 * runs it.
 *
 * @param artefacts what {@link build} produced
 * @param targets the targets they were built from (for the output names)
 * @param root directory to fill (created if missing)
 * @returns the paths written, relative to `root`
 * @throws {BuildError} when a laid-out script is not the program
 */
export async function layOutImageRoot(
  artefacts: readonly Artefact[],
  targets: readonly BuildTarget[],
  root: string,
): Promise<string[]> {
  const bin = join(root, "usr/local/bin");
  const lib = join(root, IMAGE_BUNDLE_DIR);
  await Deno.mkdir(bin, { recursive: true });
  const written: string[] = [];
  for (const artefact of artefacts) {
    const target = targets.find((t) => t.name === artefact.name);
    if (!target) throw new BuildError(`no target named ${artefact.name}`);
    const dest = join(bin, target.output);
    if (artefact.kind === "binary") {
      await Deno.copyFile(artefact.path, dest);
      await Deno.chmod(dest, 0o755);
      written.push(relative(root, dest));
      continue;
    }
    await Deno.mkdir(lib, { recursive: true });
    const bundle = join(lib, `${target.output}.js`);
    await Deno.copyFile(artefact.path, bundle);
    const specifier = relative(join(root, "usr/local/bin"), bundle);
    await Deno.writeTextFile(
      dest,
      `#!${IMAGE_DENO_PATH} -A\n` +
        `// ${target.output}: the bundle of ${target.entry}, run by the Deno beside this file ` +
        `(scripts/build.ts --image-root; no denort was reachable for deno compile).\n` +
        `import { main } from "./${specifier}";\n` +
        `Deno.exit(await main(Deno.args));\n`,
    );
    await Deno.chmod(dest, 0o755);
    written.push(relative(root, dest), relative(root, bundle));
    // Run it the way the kernel will: `deno -A /usr/local/bin/<output> <args>`.
    try {
      await runSelfTest([Deno.execPath(), "-A", dest], target.name, 60_000);
    } catch (error) {
      if (error instanceof SelfTestError) throw new BuildError(error.message);
      throw error;
    }
  }
  if (artefacts.some((a) => a.kind === "bundle")) {
    const deno = join(root, IMAGE_DENO_PATH);
    await Deno.copyFile(Deno.execPath(), deno);
    await Deno.chmod(deno, 0o755);
    written.push(relative(root, deno));
  }
  log(`image root ${root}: ${written.join(", ")}`);
  return written;
}

/** Options of {@link build}. */
export interface BuildOptions {
  /** What to build. */
  targets: BuildTarget[];
  /** Where artefacts go (created if missing). */
  outDir: string;
  /** Accept bundles when no denort can be had. */
  allowBundleFallback: boolean;
  /** Limit for each self-test run. */
  selfTestTimeoutMs: number;
  /** Result of the denort lookup (see `findDenort`). */
  denort: DenortLookup;
}

/**
 * Builds and verifies every target.
 *
 * @returns the artefacts, all verified
 * @throws {BuildError} when an entry point is missing, a step fails, an artefact is not the program, or only bundles could
 *   be made and `allowBundleFallback` is false (the bundles are left in place)
 */
export async function build(options: BuildOptions): Promise<Artefact[]> {
  for (const target of options.targets) {
    const path = resolve(ROOT, target.entry);
    if (!(await Deno.stat(path).then((info) => info.isFile, () => false))) {
      throw new BuildError(`entry point ${target.entry} (target ${target.name}) does not exist`);
    }
  }
  await Deno.mkdir(options.outDir, { recursive: true });
  const artefacts: Artefact[] = [];
  if (options.denort.found) {
    const source = options.denort.source;
    log(`denort: ${source.kind === "network" ? source.url : source.path} (${source.kind})`);
    for (const target of options.targets) {
      artefacts.push(await compile(target, options.outDir, options.selfTestTimeoutMs));
    }
  } else {
    log(
      `denort is not available, so \`deno compile\` cannot run. Tried:\n` +
        options.denort.tried.map((t) => `  - ${t}`).join("\n") +
        `\nFalling back to \`deno bundle\` (run the bundles with deno ${Deno.version.deno}).`,
    );
    for (const target of options.targets) {
      artefacts.push(await bundle(target, options.outDir, options.selfTestTimeoutMs));
    }
  }
  await Deno.writeTextFile(
    join(options.outDir, "build.json"),
    JSON.stringify({ deno: Deno.version.deno, artefacts }, null, 2) + "\n",
  );
  if (!options.denort.found && !options.allowBundleFallback) {
    throw new BuildError(
      "only bundles were produced (no denort); pass --allow-bundle-fallback to accept them",
    );
  }
  return artefacts;
}

const USAGE =
  `usage: deno task build [--allow-bundle-fallback] [--only csi,webhook] [--out-dir dist]
                       [--entry name=path]... [--self-test-timeout-ms 15000]
                       [--deno-dir DIR] [--denort-download-base URL] [--image-root DIR]`;

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "allow-bundle-fallback": { type: "boolean", default: false },
      "only": { type: "string" },
      "entry": { type: "string", multiple: true, default: [] },
      "out-dir": { type: "string", default: "dist" },
      "self-test-timeout-ms": { type: "string", default: "15000" },
      "deno-dir": { type: "string" },
      "denort-download-base": { type: "string" },
      "image-root": { type: "string" },
      "help": { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const timeout = Number(values["self-test-timeout-ms"]);
  if (!Number.isInteger(timeout) || timeout <= 0) {
    throw new BuildUsageError(`--self-test-timeout-ms must be a positive integer`);
  }
  const targets = parseTargets(values.only, values.entry);
  const denort = await findDenort({
    denoDir: values["deno-dir"],
    downloadBase: values["denort-download-base"],
  });
  const artefacts = await build({
    targets,
    outDir: resolve(ROOT, values["out-dir"]),
    allowBundleFallback: values["allow-bundle-fallback"],
    selfTestTimeoutMs: timeout,
    denort,
  });
  if (values["image-root"]) {
    await layOutImageRoot(artefacts, targets, resolve(ROOT, values["image-root"]));
  }
  log(`ok: ${artefacts.map((a) => `${relative(ROOT, a.path)} (${a.kind})`).join(", ")}`);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    if (
      error instanceof BuildUsageError ||
      (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      log(`${(error as Error).message}\n${USAGE}`);
      Deno.exit(2);
    }
    log(error instanceof BuildError ? `FAILED: ${error.message}` : String(error));
    Deno.exit(1);
  }
}
