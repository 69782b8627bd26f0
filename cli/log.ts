/**
 * Structured JSON logs on stderr: one object per line with `time`, `level`, `msg` and fields.
 *
 * @module
 */

/** Log levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A structured logger. */
export interface Logger {
  /** Debug detail. */
  debug(msg: string, fields?: Record<string, unknown>): void;
  /** Normal operation. */
  info(msg: string, fields?: Record<string, unknown>): void;
  /** Something went wrong and was handled. */
  warn(msg: string, fields?: Record<string, unknown>): void;
  /** Something went wrong and was not. */
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * Creates a JSON-lines logger.
 *
 * @param level lowest level written (default `info`)
 * @param write sink for one line (default: stderr)
 */
export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (line) => {
    Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
  },
): Logger {
  const emit = (l: LogLevel) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[l] < ORDER[level]) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: l, msg, ...fields }));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}
