/**
 * Each Containerfile's build stage has every module its programs import: the stage's `COPY`
 * lines and `/.dockerignore` are read as buildah reads them, and every entry point's module graph
 * (`deno info --json`) must be inside. The cluster test then builds the images from these very
 * Containerfiles (tests/harness/containerfile_images.ts), so a missing folder fails both.
 */

import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { buildStages, ignoreMatcher, missingFromStage, stageHas } from "./harness/build_context.ts";

const ROOT = resolve(new URL("..", import.meta.url).pathname);
const CONTAINERFILES = ["csi", "webhook", "workloads"];

const ignored = ignoreMatcher(await Deno.readTextFile(join(ROOT, ".dockerignore")));

Deno.test("ignore patterns: a directory excludes what is below it, ** spans directories", () => {
  const match = ignoreMatcher("# comment\n\ntests\n**/*_test.ts\n/dist/\nnode_modules\n");
  assert.equal(match("tests"), true);
  assert.equal(match("tests/harness/mod.ts"), true);
  assert.equal(match("csi/driver_test.ts"), true);
  assert.equal(match("trust_store/render_test.ts"), true);
  assert.equal(match("driver_test.ts"), true);
  assert.equal(match("dist/spire-cacerts-csi"), true);
  assert.equal(match("csi/driver.ts"), false);
  assert.equal(match("csi/self_check.ts"), false);
  assert.equal(match("testsuite/x.ts"), false, "a name is matched whole, not as a prefix");
  assert.throws(() => ignoreMatcher("!keep.ts"), /exceptions/);
});

Deno.test("build stages: COPY sources and the --only targets of scripts/build.ts", () => {
  const stages = buildStages(
    [
      "ARG DENO_IMAGE=denoland/deno:2.8.3",
      "FROM ${DENO_IMAGE} AS build",
      "COPY deno.json deno.lock ./",
      "COPY csi/ csi/",
      "RUN --mount=type=cache,target=/deno-dir \\",
      "    deno run -A scripts/build.ts --only server,client --out-dir /out",
      "FROM debian:12-slim AS tools",
      "COPY images/copy_mount_tools.sh /copy_mount_tools.sh",
      "FROM scratch",
      "COPY --from=build /out/ /",
    ].join("\n"),
  );
  assert.equal(stages.length, 1);
  assert.equal(stages[0].name, "build");
  assert.deepEqual(stages[0].targets, ["server", "client"]);
  assert.deepEqual(stages[0].copies.map((c) => c.sources), [["deno.json", "deno.lock"], ["csi/"]]);
  const none = () => false;
  assert.equal(stageHas(stages[0], none, "csi/main.ts"), true);
  assert.equal(stageHas(stages[0], none, "deno.lock"), true);
  assert.equal(stageHas(stages[0], none, "prometheus/mod.ts"), false);
  assert.equal(stageHas(stages[0], none, "csix/main.ts"), false);
});

Deno.test("a build stage that copies folder by folder misses what csi/main.ts imports", async () => {
  // The csi Containerfile as it was: it never copied prometheus/ (nor workloads/ for --self-test).
  const [stage] = buildStages(
    [
      "FROM denoland/deno:2.8.3 AS build",
      "WORKDIR /src",
      "COPY deno.json deno.lock ./",
      "COPY scripts/ scripts/",
      "COPY csi/ csi/",
      "COPY spire/ spire/",
      "RUN deno run -A scripts/build.ts --only csi --out-dir /out",
    ].join("\n"),
  );
  const missing = await missingFromStage(stage, () => false);
  const paths = missing.map((m) => m.path);
  assert.ok(paths.includes("prometheus/mod.ts"), `reported: ${paths.join(", ")}`);
  // What it misses is the driver's and the build script's (scripts/build.ts reads cli/).
  assert.ok(
    missing.every((m) =>
      (m.target === "csi" && m.entry === "csi/main.ts") ||
      (m.target === "build" && m.entry === "scripts/build.ts")
    ),
    `reported: ${missing.map((m) => `${m.entry}: ${m.path}`).join(", ")}`,
  );
});

for (const name of CONTAINERFILES) {
  Deno.test(`images/${name}.Containerfile: its build stage has every module its programs import`, async () => {
    const text = await Deno.readTextFile(join(ROOT, `images/${name}.Containerfile`));
    const stages = buildStages(text);
    assert.equal(stages.length, 1, "one stage runs scripts/build.ts");
    const missing = await missingFromStage(stages[0], ignored);
    assert.deepEqual(
      missing.map((m) => `${m.entry} (${m.target}) imports ${m.path}`),
      [],
      "add the folder to the build stage, or take it out of /.dockerignore",
    );
    // The whole tree minus the ignore file: nothing to keep in step by hand.
    assert.ok(
      stages[0].copies.some((c) => c.sources.includes(".")),
      "the build stage copies the context (COPY . .), filtered only by /.dockerignore",
    );
  });
}

Deno.test(".dockerignore keeps tests, benches and examples' tests out of the build context", async () => {
  for (const path of ["tests/cluster_e2e_test.ts", "bench/run.ts", "csi/driver_test.ts", ".git"]) {
    assert.equal(ignored(path), true, path);
  }
  for (const name of CONTAINERFILES) {
    const text = await Deno.readTextFile(join(ROOT, `images/${name}.Containerfile`));
    // Every file a COPY names outside the build stage (mount tools) must be in the context too.
    for (const match of text.matchAll(/^COPY\s+(?!--from)(\S+)\s+\S+$/gm)) {
      if (match[1] !== ".") assert.equal(ignored(match[1]), false, `${name}: ${match[1]}`);
    }
  }
});
