/**
 * What a Containerfile's build stage sees of the repository, and whether that is everything its
 * programs import.
 *
 * The build context is the repository minus `/.dockerignore` (the file buildah, podman and docker
 * read). A build stage's `COPY <src>... <dest>` lines select from it; `scripts/build.ts` then
 * builds the targets named by `--only`. {@link missingFromStage} reads every such entry point's
 * module graph with `deno info --json` and lists the local modules the stage would not have,
 * which is how a Containerfile that forgot a folder (e.g. `prometheus/`) fails before any image
 * is built.
 *
 * Ignore patterns follow Docker's rules for the subset the project uses: paths relative to the
 * root, `*` and `?` within one name, `**` for any number of directories, and a pattern that
 * matches a directory excludes everything below it. `!` exceptions are refused (keep the file
 * simple enough that this reading is exact).
 *
 * @module
 */

import { TARGETS } from "../../scripts/build.ts";
import { moduleGraph } from "./module_graph.ts";

/** Thrown for an ignore file or Containerfile this reader does not understand. */
export class BuildContextError extends Error {
  /** @param message what is not understood, and where */
  constructor(message: string) {
    super(message);
    this.name = "BuildContextError";
  }
}

function patternRegExp(pattern: string): RegExp {
  const parts = pattern.replace(/^\/+/, "").replace(/\/+$/, "").split("/");
  const body = parts.map((part) => {
    if (part === "**") return "(?:[^/]+/)*";
    const segment = part.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")
      .replace(/\?/g, "[^/]");
    return `${segment}/`;
  }).join("");
  // Every part ends in "/"; match the path with a trailing "/" so a directory pattern also
  // covers what is below it.
  return new RegExp(`^${body}`);
}

/**
 * A predicate for paths (relative to the context root, `/`-separated) that the ignore file
 * excludes.
 *
 * @param text the content of `.dockerignore`
 * @throws {BuildContextError} for `!` exceptions
 */
export function ignoreMatcher(text: string): (path: string) => boolean {
  const patterns: RegExp[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("!")) {
      throw new BuildContextError(`.dockerignore: exceptions ("${line}") are not supported here`);
    }
    patterns.push(patternRegExp(line));
  }
  return (path) => patterns.some((re) => re.test(`${path}/`));
}

/** One `COPY` of a build stage: its sources, relative to the context root. */
export interface StageCopy {
  /** Source paths as written (`.`, `csi/`, `deno.json`). */
  sources: string[];
}

/** A Containerfile's build stage: what it copies from the context and what it builds. */
export interface BuildStage {
  /** The stage name (`build`). */
  name: string;
  /** Its `COPY` lines without `--from`. */
  copies: StageCopy[];
  /** Targets of `scripts/build.ts --only` in its `RUN` lines. */
  targets: string[];
}

/**
 * The stages of a Containerfile that run `scripts/build.ts`.
 *
 * @param text the Containerfile
 */
export function buildStages(text: string): BuildStage[] {
  // Join continuation lines first.
  const lines = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim());
  const stages: BuildStage[] = [];
  let current: BuildStage | undefined;
  for (const line of lines) {
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?$/i.exec(line);
    if (from) {
      current = { name: from[1] ?? `#${stages.length}`, copies: [], targets: [] };
      stages.push(current);
      continue;
    }
    if (!current) continue;
    const copy = /^(?:COPY|ADD)\s+(.*)$/i.exec(line);
    if (copy) {
      const words = copy[1].split(/\s+/);
      if (words.some((w) => w.startsWith("--from="))) continue;
      const paths = words.filter((w) => !w.startsWith("--"));
      current.copies.push({ sources: paths.slice(0, -1) });
      continue;
    }
    const only = /^RUN\s.*scripts\/build\.ts\b.*--only[ =](\S+)/i.exec(line);
    if (only) current.targets.push(...only[1].split(","));
  }
  return stages.filter((s) => s.targets.length > 0);
}

/**
 * Whether a context file reaches the stage: not ignored, and under one of its `COPY` sources.
 *
 * @param stage the build stage
 * @param ignored the context's ignore predicate
 * @param path a path relative to the repository root
 */
export function stageHas(
  stage: BuildStage,
  ignored: (path: string) => boolean,
  path: string,
): boolean {
  if (ignored(path)) return false;
  return stage.copies.some((copy) =>
    copy.sources.some((source) => {
      const clean = source.replace(/^\.\//, "").replace(/\/+$/, "");
      return clean === "." || clean === "" || path === clean || path.startsWith(`${clean}/`);
    })
  );
}

/**
 * The repository files an entry point loads: its local module graph (`deno info --json`, which
 * includes statically analysable dynamic imports) plus `deno.json` and `deno.lock`.
 *
 * @param entry entry point relative to the repository root
 * @returns paths relative to the root, sorted
 */
export async function entryPointFiles(entry: string): Promise<string[]> {
  const graph = await moduleGraph([entry]);
  return [...new Set(["deno.json", "deno.lock", ...graph.keys()])].sort();
}

/** A file an entry point needs that its build stage would not have. */
export interface MissingFile {
  /** The target (`csi`). */
  target: string;
  /** Its entry point (`csi/main.ts`, or `scripts/build.ts` itself). */
  entry: string;
  /** The missing file, relative to the root. */
  path: string;
}

/**
 * Every local module that a build stage's programs (and `scripts/build.ts`, which the stage
 * runs) import but the stage would not have.
 *
 * @param stage the build stage
 * @param ignored the context's ignore predicate
 */
export async function missingFromStage(
  stage: BuildStage,
  ignored: (path: string) => boolean,
): Promise<MissingFile[]> {
  const entries = [{ target: "build", entry: "scripts/build.ts" }];
  for (const name of stage.targets) {
    const target = TARGETS.find((t) => t.name === name);
    if (!target) throw new BuildContextError(`stage ${stage.name}: unknown target "${name}"`);
    entries.push({ target: name, entry: target.entry });
  }
  const missing: MissingFile[] = [];
  for (const { target, entry } of entries) {
    for (const path of await entryPointFiles(entry)) {
      if (!stageHas(stage, ignored, path)) missing.push({ target, entry, path });
    }
  }
  return missing;
}
