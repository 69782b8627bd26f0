/**
 * What a rendered store occupies on a tmpfs, and the tmpfs size that holds it through the next
 * swap. A tmpfs charges each regular file its size rounded up to whole pages; directories and
 * the short symlinks {@link AtomicWriter} makes (`..data`, `..data/<name>`, under 128 bytes,
 * stored in the inode) charge no pages. During a swap the old generation stays whole while the
 * new one is written beside it; files whose bytes are unchanged are hard-linked (no pages), but a
 * CA rotation changes every bundle file, so a swap needs up to twice one generation.
 *
 * @module
 */

import type { Payload } from "./layouts.ts";

/** The page size a tmpfs charges in (x86-64 and arm64 with 4 KiB pages). */
export const TMPFS_PAGE_BYTES = 4096;

/** Room kept beyond two generations (crash leftovers, a long symlink, rounding). */
export const SWAP_SLACK_BYTES = 64 * 1024;

/** The granularity tmpfs sizes are chosen in. */
export const TMPFS_SIZE_STEP_BYTES = 64 * 1024;

function roundUp(n: number, step: number): number {
  return Math.ceil(n / step) * step;
}

/**
 * Bytes one generation of `payload` occupies on a tmpfs: every file rounded up to a page.
 *
 * @param payload the rendered store
 */
export function payloadTmpfsBytes(payload: Payload): number {
  let total = 0;
  for (const bytes of payload.values()) total += roundUp(bytes.length, TMPFS_PAGE_BYTES);
  return total;
}

/**
 * The bytes a swap needs at its peak: the generation on disk, a wholly new generation (no file
 * hard-linked) and {@link SWAP_SLACK_BYTES}.
 *
 * @param liveBytes bytes in use on the tmpfs now
 * @param nextBytes {@link payloadTmpfsBytes} of the next generation
 */
export function swapPeakBytes(liveBytes: number, nextBytes: number): number {
  return liveBytes + nextBytes + SWAP_SLACK_BYTES;
}

/**
 * The tmpfs size for a store of `payloadBytes`: room for it and a next generation of the same
 * size (a rotation), rounded up to {@link TMPFS_SIZE_STEP_BYTES}.
 *
 * @param payloadBytes {@link payloadTmpfsBytes} of the store
 */
export function tmpfsSizeFor(payloadBytes: number): number {
  return roundUp(swapPeakBytes(payloadBytes, payloadBytes), TMPFS_SIZE_STEP_BYTES);
}
