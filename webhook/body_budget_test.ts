import assert from "node:assert/strict";
import { ByteBudget, inFlightBytesFor } from "./body_budget.ts";

const MiB = 1024 * 1024;

Deno.test("the default budget is 1/32 of the limit, never below one largest body", () => {
  assert.equal(inFlightBytesFor(384 * MiB, 3 * MiB), 12 * MiB);
  assert.equal(inFlightBytesFor(256 * MiB, 3 * MiB), 8 * MiB);
  assert.equal(inFlightBytesFor(64 * MiB, 3 * MiB), 3 * MiB, "one 3 MiB review still fits");
});

Deno.test("a budget reserves up to its capacity and takes back what is released", () => {
  const budget = new ByteBudget(10);
  assert.equal(budget.tryReserve(6), true);
  assert.equal(budget.tryReserve(5), false, "6 + 5 > 10");
  assert.equal(budget.used, 6, "a refused reservation takes nothing");
  assert.equal(budget.tryReserve(4), true, "exactly full");
  budget.release(6);
  assert.equal(budget.used, 4);
  budget.release(100);
  assert.equal(budget.used, 0, "never below zero");
});
