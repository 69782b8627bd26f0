/**
 * Structured JSON logs on stderr: one object per line with `time`, `level`, `msg` and fields.
 * `with(fields)` gives a child logger that adds the same fields to every line (an object's key,
 * a volume id), so a loop over one object does not repeat them; the shared field names are in
 * `log_keys.ts`.
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
  /** A logger that adds `fields` to every line (a line's own fields win on a clash). */
  with(fields: Record<string, unknown>): Logger;
}

/**
 * Creates a JSON-lines logger.
 *
 * @param level lowest level written (default `info`)
 * @param write sink for one line (default: stderr)
 */
export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = writeStderr,
): Logger {
  const make = (base: Record<string, unknown>): Logger => {
    const emit = (l: LogLevel) => (msg: string, fields: Record<string, unknown> = {}) => {
      if (ORDER[l] < ORDER[level]) return;
      write(JSON.stringify({ time: new Date().toISOString(), level: l, msg, ...base, ...fields }));
    };
    return {
      debug: emit("debug"),
      info: emit("info"),
      warn: emit("warn"),
      error: emit("error"),
      with: (fields) => make({ ...base, ...fields }),
    };
  };
  return make({});
}

/** A logger that writes nothing: the default of a component given no logger. */
export const SILENT_LOGGER: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  with: () => SILENT_LOGGER,
};

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch { /* stderr closed: nothing to do */ }
}
