/**
 * `deno task check`'s documentation half: every folder's face (`mod.ts`) must type-check with its
 * doc examples (`deno check --doc`) and pass `deno doc --lint` (JSDoc on every export, no public
 * API naming a private type), as denoland/std's `_tools/check_docs.ts` keeps its packages.
 *
 * `deno check --doc` imports every name a face lists into each example, used or not, so the
 * examples are checked with a copy of `deno.json` whose `noUnusedLocals` is off; everything else
 * (strictness, the import map) is the project's own.
 *
 * A `private-type-ref` whose type comes from an npm package (`KubeConfig`, gRPC's `status`,
 * Hono's `Hono`) is that package's API, documented there: re-exporting it would pull the
 * package's own declarations into this lint. Such findings are left out, and so are those naming
 * a type another face of this project exports (it is public and documented there, e.g. `Logger`
 * from `cli/` in `webhook/`'s options); one naming any other type the project declares counts like
 * every other finding.
 *
 * ```sh
 * ./scripts/deno run -A scripts/check_docs.ts            # every face
 * ./scripts/deno run -A scripts/check_docs.ts csi/mod.ts
 * ```
 *
 * @module
 */

import { join, resolve } from "node:path";

const ROOT = resolve(new URL("..", import.meta.url).pathname);

/** Every face the project has, the root module first. */
export const FACES: readonly string[] = [
  "mod.ts",
  "api/mod.ts",
  "cli/mod.ts",
  "kube/mod.ts",
  "prometheus/mod.ts",
  "trust_store/mod.ts",
  "x509/mod.ts",
  "spire/mod.ts",
  "csi/mod.ts",
  "webhook/mod.ts",
];

/** What one face's checks reported. */
export interface FaceReport {
  /** The face, relative to the root. */
  face: string;
  /** Whether both checks passed. */
  ok: boolean;
  /** Deno's diagnostics, without colours, resolution warnings or stack dumps. */
  output: string;
}

function diagnostics(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "").split("\n")
    .filter((l) => !/^Warning Failed resolving types/.test(l) && !/^\s+at |^\s*\d+: /.test(l))
    .join("\n").trim();
}

let ownTypes: Set<string> | undefined;

/** Names of the classes, interfaces, types, enums and functions the project's own files declare. */
async function projectTypeNames(): Promise<Set<string>> {
  if (ownTypes) return ownTypes;
  const names = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(path);
        const declared =
          /^\s*(?:export\s+)?(?:declare\s+)?(?:abstract\s+)?(?:class|interface|type|enum|function)\s+([A-Za-z_$][\w$]*)\s*(?:[=<{(]|extends|implements)/gm;
        for (const match of text.matchAll(declared)) names.add(match[1]);
      }
    }
  };
  await walk(ROOT);
  return ownTypes = names;
}

let publicNames: Promise<Set<string>> | undefined;

/** Every name some face exports (`deno doc --json`), i.e. the project's documented API. */
function facesExports(): Promise<Set<string>> {
  return publicNames ??= (async () => {
    const names = new Set<string>();
    for (const face of FACES) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["doc", "--json", face],
        cwd: ROOT,
        stdout: "piped",
        stderr: "null",
      }).output();
      if (!out.success) continue;
      const doc = JSON.parse(new TextDecoder().decode(out.stdout)) as {
        nodes: Record<string, { symbols: { name: string }[] }>;
      };
      for (const node of Object.values(doc.nodes)) {
        for (const symbol of node.symbols) names.add(symbol.name);
      }
    }
    return names;
  })();
}

/**
 * `deno doc --lint` findings, each as its text block, without private-type references to npm
 * packages' types or to types another face exports.
 */
async function docLintFindings(output: string): Promise<string[]> {
  const own = await projectTypeNames();
  const documented = await facesExports();
  return output.split(/\n(?=error\[)/).filter((block) => block.startsWith("error[")).filter(
    (block) => {
      const ref = /references private type '([^']+)'/.exec(block)?.[1];
      return ref === undefined || (own.has(ref) && !documented.has(ref));
    },
  );
}

async function deno(args: string[]): Promise<{ ok: boolean; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    ok: out.success,
    output: diagnostics(decoder.decode(out.stdout) + decoder.decode(out.stderr)),
  };
}

/**
 * Runs both checks on one face.
 *
 * @param face path relative to the repository root
 * @returns whether both passed, and what Deno said
 */
export async function checkFace(face: string): Promise<FaceReport> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  config.compilerOptions = { ...config.compilerOptions, noUnusedLocals: false };
  // Beside deno.json, so node_modules and the lock file resolve the same way.
  const relaxed = join(ROOT, `.check_docs.${Deno.pid}.${crypto.randomUUID()}.json`);
  await Deno.writeTextFile(relaxed, JSON.stringify(config));
  try {
    const examples = await deno(["check", "--doc", "--config", relaxed, face]);
    const lint = await deno(["doc", "--lint", face]);
    const findings = lint.ok ? [] : await docLintFindings(lint.output);
    // A failure that is not a finding (Deno could not run) still fails.
    const lintOk = lint.ok ||
      (findings.length === 0 && /documentation lint error/.test(lint.output));
    return {
      face,
      ok: examples.ok && lintOk,
      output: [examples.ok ? "" : examples.output, lintOk ? "" : findings.join("\n") || lint.output]
        .filter(Boolean).join("\n"),
    };
  } finally {
    await Deno.remove(relaxed).catch(() => {});
  }
}

if (import.meta.main) {
  const faces = Deno.args.length > 0 ? Deno.args : FACES;
  let failed = 0;
  for (const face of faces) {
    const report = await checkFace(face);
    console.error(`${report.ok ? "ok" : "FAILED"} ${face}${report.ok ? "" : `\n${report.output}`}`);
    if (!report.ok) failed++;
  }
  Deno.exit(failed === 0 ? 0 : 1);
}
