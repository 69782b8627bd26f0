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
