/**
 * What a rendered store occupies on a tmpfs, and the tmpfs size that holds it through the next
 * swap. A tmpfs charges each inode its size rounded up to whole pages; directories, hard links
 * and the short symlinks {@link AtomicWriter} makes (`..data`, `..data/<name>`, under 128
 * bytes, stored in the inode) charge no pages. The writer writes each distinct content of a
 * generation once and hard-links the other paths with the same bytes, so a generation costs the
 * pages of its distinct contents (debian's bundled store: 281 files, 142 distinct, 273 pages
 * instead of 412). During a swap the old generation stays whole while the new one is written
 * beside it; contents the old generation already holds are hard-linked from it, so a swap needs
 * the old generation plus the new generation's new contents ({@link changedTmpfsBytes}): a CA
 * rotation changes the bundle files and the rotated CA's own files, a wholly new source every
 * file (twice one generation).
 *
 * @module
 */

import { ContentIndex } from "./content_index.ts";
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
 * Bytes one generation of `payload` occupies on a tmpfs: every distinct content rounded up to a
 * page (paths with equal bytes are hard links to one inode).
 *
 * @param payload the rendered store
 */
export function payloadTmpfsBytes(payload: Payload): number {
  return changedTmpfsBytes(payload);
}

/**
 * Bytes the next generation adds beside `previous` during a swap: the pages of every distinct
 * content of `next` that `previous` does not hold at any path (all of them without a
 * `previous`); the others are hard-linked, as {@link AtomicWriter} does.
 *
 * @param next the store about to be written
 * @param previous the store on disk, when known
 */
export function changedTmpfsBytes(next: Payload, previous?: Payload): number {
  const seen = new ContentIndex<true>();
  if (previous !== undefined) {
    for (const bytes of previous.values()) if (!seen.find(bytes)) seen.add(bytes, true);
  }
  let total = 0;
  for (const bytes of next.values()) {
    if (seen.find(bytes)) continue;
    seen.add(bytes, true);
    total += roundUp(bytes.length, TMPFS_PAGE_BYTES);
  }
  return total;
}

/**
 * The bytes a swap needs at its peak: what is on the tmpfs, the files the next generation adds
 * ({@link changedTmpfsBytes}) and {@link SWAP_SLACK_BYTES}.
 *
 * @param liveBytes bytes in use on the tmpfs now
 * @param nextBytes bytes the next generation adds
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
