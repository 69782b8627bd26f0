/**
 * Crash-test writer: `deno run -A swap_loop.ts DIR COUNT` swaps DIR between two payloads COUNT
 * times, printing `ready` before the first swap and `done N` at the end.
 *
 * @module
 */

import { AtomicWriter } from "../atomic_writer.ts";
import { swapPayload } from "./swap_payloads.ts";

const [dir, count] = Deno.args;
const writer = new AtomicWriter(dir);
const payloads = { A: swapPayload("A"), B: swapPayload("B") };
console.log("ready");
let changed = 0;
for (let i = 0; i < Number(count); i++) {
  const r = await writer.write(payloads[i % 2 === 0 ? "B" : "A"]);
  if (r.changed) changed++;
}
console.log(`done ${changed}`);
