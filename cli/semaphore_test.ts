import assert from "node:assert/strict";
import { Semaphore } from "./semaphore.ts";

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

Deno.test("the semaphore lets limit holders in and hands slots to waiters in order", async () => {
  const sem = new Semaphore(2);
  await sem.acquire();
  await sem.acquire();
  const order: number[] = [];
  const third = sem.acquire().then(() => order.push(3));
  const fourth = sem.acquire().then(() => order.push(4));
  await tick();
  assert.deepEqual([sem.active, sem.waiting, order], [2, 2, []]);
  sem.release();
  await third;
  assert.deepEqual(order, [3]);
  sem.release();
  await fourth;
  assert.deepEqual(order, [3, 4]);
  sem.release();
  sem.release();
  assert.equal(sem.active, 0);
});

Deno.test("run() holds a slot for the work and gives it back when the work throws", async () => {
  const sem = new Semaphore(1);
  let peak = 0;
  const work = async () => {
    peak = Math.max(peak, sem.active);
    await tick();
  };
  await Promise.all([sem.run(work), sem.run(work), sem.run(work)]);
  assert.equal(peak, 1);
  await assert.rejects(sem.run(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(sem.active, 0);
});

Deno.test("a semaphore limit below one is refused", () => {
  assert.throws(() => new Semaphore(0), RangeError);
  assert.throws(() => new Semaphore(1.5), RangeError);
});
