/**
 * How the webhook echoes a value it was sent (an annotation value, a header, a field of the
 * review) in a response message, a warning or a log line: quoted, and capped, so a 250 KB
 * annotation never comes back whole.
 *
 * @module
 */

/** Characters of a value echoed before it is cut. */
export const ECHO_LIMIT = 64;

/**
 * `value` as it is echoed: a string JSON-quoted, anything else as its JSON text; longer than
 * {@link ECHO_LIMIT} characters, the first ones followed by `…(N bytes)`, N being the length of
 * the whole value in UTF-8.
 *
 * ```ts
 * import { quoteValue } from "./quote.ts";
 * quoteValue("no"); // "\"no\""
 * quoteValue("x".repeat(100_000)); // "\"xxx…x\"…(100000 bytes)" (64 x)
 * ```
 */
export function quoteValue(value: unknown): string {
  const string = typeof value === "string";
  const text = string ? value : JSON.stringify(value) ?? String(value);
  if (text.length <= ECHO_LIMIT) return string ? JSON.stringify(text) : text;
  let head = text.slice(0, ECHO_LIMIT);
  // Never end on the first half of a surrogate pair.
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  const bytes = new TextEncoder().encode(text).byteLength;
  return `${string ? JSON.stringify(head) : head}…(${bytes} bytes)`;
}
