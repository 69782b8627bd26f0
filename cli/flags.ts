/**
 * One flag table per program drives `node:util` `parseArgs`, checks every value before the program
 * starts anything, and renders the flags part of `--help`, so a flag's name, default, check and
 * help line are written once.
 *
 * Every value is read as text and converted here, so a bad value is always
 * `--name: "value" is not <what the flag takes>` and a {@linkcode UsageError}. Booleans follow Go's
 * `flag` package, which the manifests were written for: `--x` alone is true and `--x=false` works.
 *
 * See `mod.ts` for an example.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Thrown for a bad command line: an unknown flag, a bad value, or flags that do not go together. */
export class UsageError extends Error {
  /**
   * Creates the error.
   *
   * @param message what is wrong, naming the flag
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** What every kind of flag has. */
export interface BaseFlag {
  /** Help text; `{default}` is replaced by the default. Lines after the first are indented. */
  help: string;
  /** Placeholder shown after the name in help, e.g. `DIR`. */
  arg?: string;
  /** Left column of the help line instead of `--name ARG`, e.g. `--version, --help`. */
  label?: string;
  /** Left out of the help (another flag's label names it). */
  hidden?: boolean;
  /** Default, as it would be written on the command line; checked like any value. */
  default?: string;
  /** What the flag takes, for the error: `--name: "value" is not <expect>`. */
  expect?: string;
}

/** Any text; `parse` may convert it (returning undefined, or throwing, for a bad value). */
export interface StringFlag extends BaseFlag {
  /** The flag kind. */
  type: "string";
  /** Refuse an empty (or blank) value: `--name is empty`. */
  nonEmpty?: boolean;
  /** Converts the text; undefined means bad value, a thrown message is shown after the name. */
  parse?: (text: string) => unknown;
}

/** `--x`, `--x=true` or `--x=false` (also t/f, 1/0, yes/no). */
export interface BooleanFlag extends BaseFlag {
  /** The flag kind. */
  type: "boolean";
}

/** An integer between `min` and `max`. */
export interface NumberFlag extends BaseFlag {
  /** The flag kind. */
  type: "number";
  /** Smallest value accepted. */
  min?: number;
  /** Largest value accepted. */
  max?: number;
}

/** A duration such as `500ms`, `2s`, `1.5m` or `1h`, as milliseconds. */
export interface DurationFlag extends BaseFlag {
  /** The flag kind. */
  type: "duration";
  /** Accept 0 (default: only positive durations). */
  allowZero?: boolean;
  /** A bare number means seconds (default: a unit is required). */
  bareSeconds?: boolean;
}

/** One of `values`. */
export interface EnumFlag extends BaseFlag {
  /** The flag kind. */
  type: "enum";
  /** The accepted values. */
  values: readonly string[];
}

/** A comma- or space-separated list; empty items are dropped. */
export interface ListFlag extends BaseFlag {
  /** The flag kind. */
  type: "list";
}

/** One flag. */
export type FlagSpec = StringFlag | BooleanFlag | NumberFlag | DurationFlag | EnumFlag | ListFlag;

/** Flags by name (without `--`), in help order. */
export type FlagTable = Record<string, FlagSpec>;

/** The value a flag parses to. */
export type FlagValue<F> = F extends BooleanFlag ? boolean
  : F extends NumberFlag | DurationFlag ? number
  : F extends { type: "enum"; values: readonly (infer V)[] } ? V
  : F extends ListFlag ? string[]
  : F extends { parse: (text: string) => infer R } ? Exclude<R, undefined>
  : string;

/** Parsed flags: booleans and lists are always set, others when they have a default or were given. */
export type ParsedFlags<T extends FlagTable> = {
  -readonly [K in keyof T]: T[K] extends BooleanFlag | ListFlag | { default: string }
    ? FlagValue<T[K]>
    : FlagValue<T[K]> | undefined;
};

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

function orList(values: readonly string[]): string {
  return values.length < 2
    ? values.join("")
    : `${values.slice(0, -1).join(", ")} or ${values.at(-1)}`;
}

function convert(name: string, spec: FlagSpec, text: string): unknown {
  const bad = (expect: string) =>
    new UsageError(`--${name}: ${JSON.stringify(text)} is not ${spec.expect ?? expect}`);
  switch (spec.type) {
    case "boolean":
      if (/^(true|t|1|yes)$/i.test(text)) return true;
      if (/^(false|f|0|no)$/i.test(text)) return false;
      throw bad("true or false");
    case "number": {
      const n = Number(text);
      const min = spec.min ?? -Infinity, max = spec.max ?? Infinity;
      if (text.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
        throw bad(
          min === 1 && max === Infinity
            ? "a positive integer"
            : min === 0 && max === Infinity
            ? "a non-negative integer"
            : `an integer from ${min} to ${max}`,
        );
      }
      return n;
    }
    case "duration": {
      const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
      const unit = match?.[2] ?? (spec.bareSeconds ? "s" : undefined);
      const ms = match && unit ? Number(match[1]) * DURATION_UNITS[unit] : NaN;
      if (!(ms > 0 || (spec.allowZero && ms === 0))) {
        throw bad(
          spec.allowZero
            ? "a duration such as 100ms, 1s, 2m or 1h"
            : "a positive duration such as 2s or 5m",
        );
      }
      return ms;
    }
    case "enum":
      if (!spec.values.includes(text)) throw bad(orList(spec.values));
      return text;
    case "list":
      return text.split(/[\s,]+/).filter(Boolean);
    case "string": {
      if (spec.nonEmpty && text.trim() === "") throw new UsageError(`--${name} is empty`);
      if (!spec.parse) return text;
      let value: unknown;
      try {
        value = spec.parse(text);
      } catch (error) {
        throw new UsageError(`--${name}: ${(error as Error).message}`);
      }
      if (value === undefined) throw bad("valid");
      return value;
    }
  }
}

/**
 * Parses and checks a command line against a table.
 *
 * @param table the program's flags
 * @param args the command line (no positionals)
 * @returns every flag's value, converted
 * @throws {UsageError} for an unknown flag, a missing or bad value
 */
export function parseFlagTable<T extends FlagTable>(table: T, args: string[]): ParsedFlags<T> {
  // `--x` alone is `--x=true` for a boolean, so `--x=false` can be a string option underneath.
  const booleans = new Set(
    Object.entries(table).filter(([, spec]) => spec.type === "boolean").map(([name]) =>
      `--${name}`
    ),
  );
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: args.map((arg) => booleans.has(arg) ? `${arg}=true` : arg),
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(Object.keys(table).map((name) => [name, { type: "string" }])),
    }) as { values: Record<string, string | undefined> });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const result: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) {
    const text = values[name] ?? spec.default ??
      (spec.type === "boolean" ? "false" : spec.type === "list" ? "" : undefined);
    result[name] = text === undefined ? undefined : convert(name, spec, text);
  }
  return result as ParsedFlags<T>;
}

/**
 * Renders the flags part of `--help`: one `  --name ARG   help` line per flag, help in one column.
 *
 * @param table the program's flags
 * @param column width of the name column after the two-space indent (default 28)
 * @returns the lines, without a final newline
 */
export function renderFlags(table: FlagTable, column = 28): string {
  const lines: string[] = [];
  for (const [name, spec] of Object.entries(table)) {
    if (spec.hidden) continue;
    const label = spec.label ?? (spec.arg ? `--${name} ${spec.arg}` : `--${name}`);
    const help = spec.help.replaceAll("{default}", spec.default ?? "").split("\n");
    const first = help[0] === "" ? label : `${label.padEnd(column - 1)} ${help[0]}`;
    lines.push(`  ${first}`, ...help.slice(1).map((line) => `${" ".repeat(column + 2)}${line}`));
  }
  return lines.join("\n");
}

/** What a command line asks for: one of the answers every program gives, or to run. */
export type Mode = "help" | "version" | "self-test" | "run";

/**
 * The mode `--help`, `--version` and `--self-test` select, in that order of precedence.
 *
 * @param values parsed flags (a flag the program lacks counts as not given)
 */
export function modeOf(values: { help?: boolean; version?: boolean; "self-test"?: boolean }): Mode {
  return values.help
    ? "help"
    : values.version
    ? "version"
    : values["self-test"]
    ? "self-test"
    : "run";
}

/** How a program answers `--help`, `--version` and `--self-test`. */
export interface ModeAnswers {
  /** Name printed by `--version` and `--self-test`, e.g. `spire-cacerts-csi`. */
  program: string;
  /** Version printed after the name. */
  version: string;
  /** The `--help` text. */
  help: string;
  /** Runs the in-memory self-test; throws when it fails. */
  selfTest: () => Promise<void>;
}

/**
 * Answers `--help` (the help on stdout), `--version` (`<program> <version>`) and `--self-test`
 * (`<program> self-test ok` once it passed, the line the build's artefact check looks for).
 *
 * @returns the exit code (0) when the mode was answered, undefined for `run`
 * @throws what the self-test throws
 */
export async function answerMode(mode: Mode, answers: ModeAnswers): Promise<number | undefined> {
  if (mode === "help") console.log(answers.help);
  else if (mode === "version") console.log(`${answers.program} ${answers.version}`);
  else if (mode === "self-test") {
    await answers.selfTest();
    console.log(`${answers.program} self-test ok`);
  } else return undefined;
  return 0;
}
