/**
 * Build-test input that never answers, like a REPL waiting for input.
 *
 * @module
 */

setInterval(() => {}, 1_000);
