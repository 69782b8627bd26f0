import assert from "node:assert/strict";
import {
  formatV8Flags,
  HeapFlagsError,
  heapSizesFor,
  parseMemoryQuantity,
  v8FlagsFor,
} from "./heap_flags.ts";

const MiB = 1024 * 1024;

Deno.test("heap sizes for the shipped limits", () => {
  assert.deepEqual(heapSizesFor(384 * MiB), { oldSpaceMiB: 144, semiSpaceMiB: 2 });
  assert.deepEqual(heapSizesFor(256 * MiB), { oldSpaceMiB: 96, semiSpaceMiB: 1 });
  assert.equal(v8FlagsFor(384 * MiB), "--max-old-space-size=144,--max-semi-space-size=2");
});

Deno.test("the semi-space grows with the limit between 1 and 16 MiB; old space stays 3/8", () => {
  assert.deepEqual(heapSizesFor(64 * MiB), { oldSpaceMiB: 24, semiSpaceMiB: 1 });
  assert.deepEqual(heapSizesFor(1024 * MiB), { oldSpaceMiB: 384, semiSpaceMiB: 6 });
  assert.deepEqual(heapSizesFor(8192 * MiB), { oldSpaceMiB: 3072, semiSpaceMiB: 16 });
  assert.throws(() => heapSizesFor(63 * MiB), HeapFlagsError);
  assert.throws(() => heapSizesFor(Number.NaN), HeapFlagsError);
});

Deno.test("flags are comma-separated, the form DENO_V8_FLAGS splits", () => {
  assert.equal(
    formatV8Flags({ oldSpaceMiB: 10, semiSpaceMiB: 3 }),
    "--max-old-space-size=10,--max-semi-space-size=3",
  );
});

Deno.test("memory quantities", () => {
  assert.equal(parseMemoryQuantity("384Mi"), 384 * MiB);
  assert.equal(parseMemoryQuantity("1Gi"), 1024 * MiB);
  assert.equal(parseMemoryQuantity("1G"), 1e9);
  assert.equal(parseMemoryQuantity("134217728"), 128 * MiB);
  assert.equal(parseMemoryQuantity("1.5Ki"), 1536);
  for (const bad of ["", "384mi", "100m", "1e3", "-1Mi", "Mi"]) {
    assert.throws(() => parseMemoryQuantity(bad), HeapFlagsError, bad);
  }
});
