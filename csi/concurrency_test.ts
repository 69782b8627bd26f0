import assert from "node:assert/strict";
import { KeyedLock } from "./concurrency.ts";

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

Deno.test("calls for one key run one after another, calls for other keys run alongside", async () => {
  const lock = new KeyedLock();
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const a1 = lock.run("a", async () => {
    order.push("a1 start");
    await gate;
    order.push("a1 end");
  });
  const a2 = lock.run("a", () => Promise.resolve(order.push("a2")));
  const b = lock.run("b", () => Promise.resolve(order.push("b")));
  await b;
  await tick();
  assert.deepEqual(order, ["a1 start", "b"]);
  release();
  await Promise.all([a1, a2]);
  assert.deepEqual(order, ["a1 start", "b", "a1 end", "a2"]);
  assert.equal(lock.size, 0, "settled keys are forgotten");
});

Deno.test("a call that throws does not stop the next call for its key", async () => {
  const lock = new KeyedLock();
  const failed = lock.run("a", () => Promise.reject(new Error("boom")));
  const next = lock.run("a", () => Promise.resolve("ran"));
  await assert.rejects(failed, /boom/);
  assert.equal(await next, "ran");
});
