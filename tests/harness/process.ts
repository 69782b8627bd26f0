/**
 * Long-running child processes with their output kept in a log file, plus small waiting and
 * command-running utilities shared by the component starters.
 *
 * @module
 */
import { setTimeout as delay } from "node:timers/promises";

/** Thrown when a command run to completion exits non-zero. */
export class CommandFailedError extends Error {
  /** The command line that failed. */
  readonly command: readonly string[];
  /** Its exit code. */
  readonly code: number;
  /** What it wrote to stderr. */
  readonly stderr: string;

  /**
   * Creates the error for a failed command.
   *
   * @param command program and arguments
   * @param code exit code
   * @param stdout captured standard output
   * @param stderr captured standard error
   */
  constructor(command: readonly string[], code: number, stdout: string, stderr: string) {
    super(
      `command failed (exit ${code}): ${command.join(" ")}\n` +
        `${stderr.trim() || stdout.trim() || "(no output)"}`,
    );
    this.name = "CommandFailedError";
    this.command = command;
    this.code = code;
    this.stderr = stderr;
  }
}

/** Thrown when a condition does not become true in time. */
export class WaitTimeoutError extends Error {
  /**
   * Creates the error for a condition that did not become true.
   *
   * @param what description of the awaited condition
   * @param timeoutMs how long was waited
   * @param lastError the last failure seen while polling, if any
   * @param detail extra context (e.g. the tail of a log)
   */
  constructor(what: string, timeoutMs: number, lastError?: unknown, detail?: string) {
    const last = lastError instanceof Error
      ? lastError.message
      : lastError === undefined
      ? ""
      : String(lastError);
    super(
      `timed out after ${timeoutMs} ms waiting for ${what}` +
        (last ? `; last error: ${last}` : "") + (detail ? `\n${detail}` : ""),
    );
    this.name = "WaitTimeoutError";
  }
}

/** Thrown when a long-running process exits while it was expected to keep running. */
export class ProcessExitedError extends Error {
  /**
   * Creates the error for a process that ended unexpectedly.
   *
   * @param name display name of the process
   * @param code its exit code
   * @param logTail last lines of its output
   */
  constructor(name: string, code: number, logTail: string) {
    super(`${name} exited with code ${code}; last output:\n${logTail}`);
    this.name = "ProcessExitedError";
  }
}

/** Result of a command run to completion. */
export interface CommandResult {
  /** Exit code. */
  code: number;
  /** Standard output as UTF-8 text. */
  stdout: string;
  /** Standard error as UTF-8 text. */
  stderr: string;
}

/** Options for {@link runCommand}. */
export interface RunCommandOptions {
  /** Text written to the command's standard input. */
  stdin?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Throw {@link CommandFailedError} on a non-zero exit (default false). */
  check?: boolean;
}

/**
 * Runs a command to completion and captures its output.
 *
 * @param command program followed by its arguments
 * @param options stdin, env, cwd and whether to throw on failure
 */
export async function runCommand(
  command: readonly string[],
  options: RunCommandOptions = {},
): Promise<CommandResult> {
  const [program, ...args] = command;
  const child = new Deno.Command(program, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  const result = {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
  if (options.check && result.code !== 0) {
    throw new CommandFailedError(command, result.code, result.stdout, result.stderr);
  }
  return result;
}

/**
 * Polls `probe` until it returns a value other than `undefined`/`false`, or throws
 * {@link WaitTimeoutError}. Exceptions from `probe` count as "not yet" and the last one is reported.
 *
 * @param what description used in the timeout message
 * @param probe the condition; may be async
 * @param options timeout (default 30 s), interval (default 200 ms), and `abort`, checked every
 *   round, which may throw to stop waiting early (e.g. when the process died)
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | false | undefined | Promise<T | false | undefined>,
  options: { timeoutMs?: number; intervalMs?: number; abort?: () => void; detail?: () => string } =
    {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 200;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (true) {
    options.abort?.();
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      throw new WaitTimeoutError(what, timeoutMs, lastError, options.detail?.());
    }
    await delay(intervalMs);
  }
}

/** Options for {@link startProcess}. */
export interface StartProcessOptions {
  /** Display name used in errors. */
  name: string;
  /** Program path. */
  program: string;
  /** Arguments. */
  args: readonly string[];
  /** File receiving both stdout and stderr. */
  logPath: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
}

// Safety net: processes still running when this program exits (a test that forgot stop(), an
// uncaught error) are killed so that no etcd or apiserver outlives the test run.
const live = new Set<Deno.ChildProcess>();
globalThis.addEventListener("unload", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
});

/** A running child process whose output goes to a log file. */
export class ManagedProcess {
  /** Display name. */
  readonly name: string;
  /** Path of the log file. */
  readonly logPath: string;
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>;
  #exitCode: number | null = null;
  readonly #status: Promise<Deno.CommandStatus>;

  private constructor(options: StartProcessOptions, child: Deno.ChildProcess, log: Deno.FsFile) {
    this.name = options.name;
    this.logPath = options.logPath;
    this.#child = child;
    // Both streams are appended to one file; writes of whole chunks keep lines mostly intact.
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) await log.write(chunk);
    };
    this.#pumps = Promise.all([pump(child.stdout), pump(child.stderr)]).then(() => log.close());
    live.add(child);
    this.#status = child.status.then((status) => {
      live.delete(child);
      this.#exitCode = status.code;
      return status;
    });
  }

  /** Spawns the process. */
  static start(options: StartProcessOptions): ManagedProcess {
    const log = Deno.openSync(options.logPath, { create: true, append: true });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(options.program, {
        args: [...options.args],
        env: options.env,
        cwd: options.cwd,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      log.close();
      throw new Error(`cannot start ${options.name} (${options.program}): ${error}`);
    }
    return new ManagedProcess(options, child, log);
  }

  /** Process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Exit code once the process has ended, else null. */
  get exitCode(): number | null {
    return this.#exitCode;
  }

  /** Throws {@link ProcessExitedError} if the process has ended. For use as a `waitFor` abort. */
  assertRunning(): void {
    if (this.#exitCode !== null) {
      throw new ProcessExitedError(this.name, this.#exitCode, this.logTail());
    }
  }

  /** The last lines of the log file. */
  logTail(lines = 30): string {
    try {
      const text = Deno.readTextFileSync(this.logPath);
      return text.trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /**
   * Stops the process: SIGTERM, then SIGKILL after `graceMs` (default 5 s). Resolves once it has
   * exited and its output is flushed. Safe to call more than once.
   */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.#exitCode === null) {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* already gone */ }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const killed = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          try {
            this.#child.kill("SIGKILL");
          } catch { /* already gone */ }
          resolve();
        }, graceMs);
      });
      await Promise.race([this.#status, killed]);
      clearTimeout(timer);
    }
    await this.#status;
    await this.#pumps;
  }
}

/** Starts a process whose stdout and stderr go to `logPath`. */
export function startProcess(options: StartProcessOptions): ManagedProcess {
  return ManagedProcess.start(options);
}

/**
 * Distinct TCP ports on 127.0.0.1 that were free a moment ago (all are held open together while
 * being picked, so they differ from each other).
 *
 * @param count how many ports
 */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

/**
 * Whether a program of that name is on `PATH` (a regular file in one of its directories).
 *
 * @param name the program, e.g. `buildah`
 */
export function hasCommand(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
