/**
 * What a rendered store occupies on a tmpfs, and the tmpfs size that holds it through the next
 * swap. A tmpfs charges each regular file its size rounded up to whole pages; directories and
 * the short symlinks {@link AtomicWriter} makes (`..data`, `..data/<name>`, under 128 bytes,
 * stored in the inode) charge no pages. During a swap the old generation stays whole while the
 * new one is written beside it; files whose bytes are unchanged at the same path are hard-linked
 * (no pages), so a swap needs the old generation plus the new generation's changed files
 * ({@link changedTmpfsBytes}): a CA rotation changes the bundle files and the rotated CA's own
 * files, a wholly new source every file (twice one generation).
 *
 * @module
 */

import { Buffer } from "node:buffer";
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
 * Bytes the next generation adds beside `previous` during a swap: the pages of every file whose
 * bytes differ from `previous`'s file at the same path (all of them without a `previous`);
 * the others are hard-linked, as {@link AtomicWriter} does.
 *
 * @param next the store about to be written
 * @param previous the store on disk, when known
 */
export function changedTmpfsBytes(next: Payload, previous?: Payload): number {
  let total = 0;
  for (const [rel, bytes] of next) {
    const old = previous?.get(rel);
    if (old !== undefined && (old === bytes || Buffer.compare(old, bytes) === 0)) continue;
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
