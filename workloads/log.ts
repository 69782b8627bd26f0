/**
 * Structured JSON logs on stderr, one object per line: time, level, msg, fields — the same
 * logger as the project's programs (`cli/log.ts`), at debug level. The example client's
 * Go-style lines are its output format, not structured logs, and do not come from here.
 *
 * @module
 */

import { createLogger, type LogLevel } from "../cli/mod.ts";

export type { LogLevel };

/** The examples' logger: every level, on stderr. */
export const logger = createLogger("debug");

/**
 * Writes one JSON log line to stderr.
 *
 * @param level severity
 * @param msg message
 * @param fields extra fields
 */
export function log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  logger[level](msg, fields);
}
