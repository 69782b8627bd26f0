/**
 * `@peculiar/x509`, loaded after `reflect-metadata`: its dependency `tsyringe` refuses to load
 * unless the Reflect metadata API exists, and Deno does not provide it.
 *
 * @module
 */

import "reflect-metadata";

/** The `@peculiar/x509` module. */
export const x509: typeof import("@peculiar/x509") = await import("@peculiar/x509");
