/**
 * Runs a built artefact with `--self-test` and decides whether it is the program: it must print
 * `<program> self-test ok`, exit 0, and do so within a time limit with standard input closed. A
 * `deno compile` made with the `deno` binary as runtime starts a REPL instead; with stdin closed
 * that REPL prints a banner and exits, and neither prints the self-test line.
 *
 * @module
 */

/** Thrown when an artefact is not the program it should be. */
export class SelfTestError extends Error {
  /** The command that was run. */
  readonly command: readonly string[];

  /**
   * @param command the command that was run
   * @param reason why the result was rejected (includes captured output)
   */
  constructor(command: readonly string[], reason: string) {
    super(`\`${command.join(" ")}\` is not the program: ${reason}`);
    this.name = "SelfTestError";
    this.command = command;
  }
}

/** What a successful self-test printed. */
export interface SelfTestResult {
  /** The matching line, e.g. `spire-cacerts-csi self-test ok`. */
  line: string;
  /** Wall time of the run. */
  elapsedMs: number;
}

function excerpt(text: string): string {
  const trimmed = text.trim();
  if (trimmed === "") return "(nothing)";
  return JSON.stringify(trimmed.length > 400 ? trimmed.slice(0, 400) + "…" : trimmed);
}

/**
 * Runs `command` (plus `--self-test`) and checks its answer.
 *
 * @param command program and leading arguments, e.g. `["dist/spire-cacerts-csi"]`
 * @param name a word the program's self-test line must contain, e.g. `"csi"`
 * @param timeoutMs how long to wait before killing it (default 15 s)
 * @throws {SelfTestError} on a timeout, a non-zero exit, or a missing self-test line
 */
export async function runSelfTest(
  command: readonly string[],
  name: string,
  timeoutMs = 15_000,
): Promise<SelfTestResult> {
  const full = [...command, "--self-test"];
  const started = performance.now();
  const child = new Deno.Command(full[0], {
    args: full.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  const out = await child.output().finally(() => clearTimeout(timer));
  const elapsedMs = performance.now() - started;
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  if (timedOut) {
    throw new SelfTestError(full, `no answer within ${timeoutMs} ms; stdout ${excerpt(stdout)}`);
  }
  const line = stdout.split("\n").map((l) => l.trim()).find((l) =>
    /^\S+ self-test ok$/.test(l) && l.split(" ")[0].includes(name)
  );
  if (!line) {
    throw new SelfTestError(
      full,
      `expected a line "<program> self-test ok" naming ${name}; exit ${out.code}, ` +
        `stdout ${excerpt(stdout)}, stderr ${excerpt(stderr)}`,
    );
  }
  if (out.code !== 0) {
    throw new SelfTestError(full, `printed "${line}" but exited ${out.code}`);
  }
  return { line, elapsedMs };
}
