/**
 * What every program's command line shares: the structured logger.
 *
 * ```ts
 * import { createLogger } from "./mod.ts";
 * const log = createLogger("info");
 * log.info("started", { port: 8443 });
 * ```
 *
 * @module
 */

export * from "./log.ts";
