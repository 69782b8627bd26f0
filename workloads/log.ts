/**
 * Structured JSON logs on stderr, one object per line: time, level, msg, fields.
 *
 * @module
 */

/** Log levels. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * Writes one JSON log line to stderr.
 *
 * @param level severity
 * @param msg message
 * @param fields extra fields
 */
export function log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields });
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
  } catch { /* stderr closed: nothing to do */ }
}

/**
 * Parses a duration such as `1s`, `100ms`, `2m`, `1.5s` or a bare number of seconds.
 *
 * @param value the text
 * @param flag flag name for the error
 * @returns milliseconds
 * @throws {RangeError} naming the flag and the accepted forms
 */
export function parseDuration(value: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!match) {
    throw new RangeError(
      `--${flag}: ${JSON.stringify(value)} is not a duration (use e.g. 100ms, 1s, 2m, 1h)`,
    );
  }
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"]!;
  return Number(match[1]) * factor;
}
