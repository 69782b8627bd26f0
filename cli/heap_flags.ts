/**
 * V8 heap sizes as a function of the container's memory limit, written as the V8 flags every
 * program is started with: `DENO_V8_FLAGS` in the manifests and the Containerfiles (bundles run by
 * `deno`), `deno compile --v8-flags` for binaries (which ignore `DENO_V8_FLAGS`). One function, so
 * a manifest's flags and its limit cannot drift apart (tests/manifests_test.ts checks them).
 *
 * Why these fractions (measured with webhook/mutate_bench.ts, the webhook in a memory cgroup at
 * its 384Mi limit; see the README's benchmark lines):
 *
 * - Without flags the heap limit is 4192 MB (old space 4096 MB + young generation 3 × 32 MB):
 *   V8 sees no reason to collect before the process is far past any container limit, which is
 *   how the webhook kept 307–402 MB after ordinary load.
 * - Old space: {@link OLD_SPACE_FRACTION} (3/8) of the limit, 144 MiB at 384Mi. Everything else
 *   the process holds is outside it: the runtime and its code (~63 MB for a bare Deno, +6 MB for
 *   kube/'s Kubernetes client, which replaced `@kubernetes/client-node`'s +55 MB), TLS and socket buffers, and request bodies (array buffers, bounded
 *   separately by the webhook's in-flight budget, 1/32 of the limit). 3/8 leaves more than half
 *   of the limit for those and for the collector's own headroom.
 * - Semi-space: {@link SEMI_SPACE_MIB_PER_GIB} MiB per GiB of limit, at least 1 and at most 16
 *   (2 MiB at 384Mi, 1 MiB at 256Mi): the young generation is three semi-spaces and is all touched
 *   memory under load, so Deno's default 32 MiB semi-space costs up to 96 MB of resident memory
 *   by itself; 2 MiB costs some scavenges more per request.
 *
 * `DENO_V8_FLAGS` is split on commas (a space makes V8 reject the whole value), so the flags are
 * joined with commas; `deno compile --v8-flags=` takes the same text.
 *
 * @module
 */

/** Share of the container memory limit given to V8's old space. */
export const OLD_SPACE_FRACTION = 3 / 8;

/** Semi-space size per GiB of container memory limit. */
export const SEMI_SPACE_MIB_PER_GIB = 6;

const MiB = 1024 * 1024;

/** V8 heap sizes for one container memory limit. */
export interface HeapSizes {
  /** `--max-old-space-size`, MiB. */
  oldSpaceMiB: number;
  /** `--max-semi-space-size`, MiB. */
  semiSpaceMiB: number;
}

/** A memory quantity, V8 flag text or limit these functions cannot use. */
export class HeapFlagsError extends Error {
  /**
   * Creates an instance.
   *
   * @param message what is wrong
   * @param options the underlying error, if any
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HeapFlagsError";
  }
}

/**
 * The heap sizes for a container memory limit.
 *
 * @param limitBytes the container's `limits.memory` in bytes (at least 64 MiB)
 * @throws {HeapFlagsError} for a limit below 64 MiB (a Deno program does not start in less)
 */
export function heapSizesFor(limitBytes: number): HeapSizes {
  if (!Number.isFinite(limitBytes) || limitBytes < 64 * MiB) {
    throw new HeapFlagsError(`memory limit ${limitBytes} bytes is below 64 MiB`);
  }
  const semiSpaceMiB = Math.min(
    16,
    Math.max(1, Math.floor((limitBytes / (1024 * MiB)) * SEMI_SPACE_MIB_PER_GIB)),
  );
  return { oldSpaceMiB: Math.floor((limitBytes / MiB) * OLD_SPACE_FRACTION), semiSpaceMiB };
}

/** The sizes as V8 flags, comma-separated (the form `DENO_V8_FLAGS` and `--v8-flags` take). */
export function formatV8Flags(sizes: HeapSizes): string {
  return `--max-old-space-size=${sizes.oldSpaceMiB},--max-semi-space-size=${sizes.semiSpaceMiB}`;
}

/**
 * The V8 flags for a container memory limit.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { v8FlagsFor } from "./heap_flags.ts";
 * assert.equal(v8FlagsFor(384 * 1024 * 1024), "--max-old-space-size=144,--max-semi-space-size=2");
 * ```
 *
 * @throws {HeapFlagsError} as {@link heapSizesFor}
 */
export function v8FlagsFor(limitBytes: number): string {
  return formatV8Flags(heapSizesFor(limitBytes));
}

const SUFFIXES: Record<string, number> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/**
 * Bytes of a Kubernetes memory quantity such as `384Mi`, `1G` or `134217728`.
 *
 * @throws {HeapFlagsError} for anything else
 */
export function parseMemoryQuantity(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity.trim());
  if (!match) throw new HeapFlagsError(`not a memory quantity: "${quantity}"`);
  return Math.ceil(Number(match[1]) * SUFFIXES[match[2] ?? ""]);
}
