import assert from "node:assert/strict";
import { LastGood } from "./last_good.ts";

Deno.test("last good: a rejected read keeps the value and records why; a good read clears it", () => {
  const latest = new LastGood<string>();
  latest.reject(new Error("missing"));
  assert.equal(latest.value, undefined);
  assert.equal(latest.error?.message, "missing");
  assert.equal(latest.accept("a"), undefined);
  assert.equal(latest.error as Error | undefined, undefined);
  latest.reject(new Error("torn"));
  assert.equal(latest.value, "a");
  assert.equal(latest.error?.message, "torn");
  assert.equal(latest.accept("b"), "a");
  assert.deepEqual([latest.value, latest.error], ["b", undefined]);
});
