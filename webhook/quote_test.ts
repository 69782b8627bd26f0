import assert from "node:assert/strict";
import { ECHO_LIMIT, quoteValue } from "./quote.ts";

Deno.test("short values are quoted whole, long ones cut with their size", () => {
  assert.equal(quoteValue("no"), '"no"');
  assert.equal(quoteValue(null), "null");
  assert.equal(quoteValue(undefined), "undefined");
  assert.equal(quoteValue({ a: 1 }), '{"a":1}');
  const exact = "y".repeat(ECHO_LIMIT);
  assert.equal(quoteValue(exact), JSON.stringify(exact));
  const big = "x".repeat(250 * 1024);
  assert.equal(quoteValue(big), `"${"x".repeat(ECHO_LIMIT)}"…(256000 bytes)`);
  assert.equal(quoteValue([big]), `["${"x".repeat(ECHO_LIMIT - 2)}…(256004 bytes)`);
  // A cut never splits a surrogate pair; the size counts UTF-8 bytes.
  const emoji = "a".repeat(ECHO_LIMIT - 1) + "😀".repeat(10);
  assert.equal(quoteValue(emoji), `"${"a".repeat(ECHO_LIMIT - 1)}"…(${ECHO_LIMIT - 1 + 40} bytes)`);
});
