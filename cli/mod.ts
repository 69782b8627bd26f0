/**
 * What every program shares: the flag table that parses, checks and documents its flags, the
 * structured logger, the version, the retry back-off of every list/watch loop and a counting
 * semaphore. Nothing here loads an npm package, so the SPIFFE side and the examples can use it.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLogger, type FlagTable, LOG_KEYS, parseFlagTable, renderFlags } from "./mod.ts";
 *
 * const log = createLogger("info");
 * log.with({ [LOG_KEYS.dir]: "/run/spiffe/certs" }).info("started", { [LOG_KEYS.port]: 8443 });
 *
 * const table = {
 *   port: { type: "number", min: 0, max: 65535, arg: "N", default: "8443", help: "(default {default})" },
 *   verbose: { type: "boolean", help: "more logs" },
 * } as const satisfies FlagTable;
 * assert.deepEqual(parseFlagTable(table, ["--port=9443", "--verbose"]), { port: 9443, verbose: true });
 * assert.equal(renderFlags(table).split("\n")[0], "  --port N                    (default 8443)");
 * ```
 *
 * @module
 */

export * from "./backoff.ts";
export * from "./flags.ts";
export * from "./heap_flags.ts";
export * from "./log.ts";
export * from "./log_keys.ts";
export * from "./memory_limit.ts";
export * from "./semaphore.ts";
export * from "./version.ts";
