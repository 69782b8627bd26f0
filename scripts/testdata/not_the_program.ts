/**
 * Build-test input that runs fine but is not the program: it never prints a self-test line.
 *
 * @module
 */

console.log("hello from something else");
