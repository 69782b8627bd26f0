/**
 * Finds byte arrays already seen, by content: the one notion of "identical file" shared by
 * {@link AtomicWriter} (which writes each distinct content of a generation once and hard-links
 * every other path holding the same bytes) and `store_size.ts` (which counts pages per distinct
 * content to match). Lookup buckets by length and compares with a native memcmp; a trust store's
 * same-length files differ within their first few dozen bytes, so this costs less than hashing.
 *
 * Why: a tmpfs charges its pages to the memory cgroup of the process that writes them (the
 * driver's container), and most store files are ~2 KB certificates rounded up to a 4 KiB page.
 * Debian's bundled store is 281 files but 142 distinct contents (each `<label>.pem` has a
 * `<subject_hash>.0` copy): 412 pages, 273 when deduplicated.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** Byte arrays seen so far, each with a value (e.g. the path it was written at). */
export class ContentIndex<T> {
  #byLength = new Map<number, { bytes: Uint8Array; value: T }[]>();

  /**
   * The value recorded for bytes equal to `bytes`, if any.
   *
   * @param bytes the content to look up
   */
  find(bytes: Uint8Array): T | undefined {
    const bucket = this.#byLength.get(bytes.length);
    if (bucket === undefined) return undefined;
    for (const entry of bucket) {
      if (entry.bytes === bytes || Buffer.compare(entry.bytes, bytes) === 0) return entry.value;
    }
    return undefined;
  }

  /**
   * Records `value` for `bytes` (the caller checks {@link find} first; a second record of the
   * same content is never returned).
   *
   * @param bytes the content
   * @param value what to return for it
   */
  add(bytes: Uint8Array, value: T): void {
    const bucket = this.#byLength.get(bytes.length);
    if (bucket === undefined) this.#byLength.set(bytes.length, [{ bytes, value }]);
    else bucket.push({ bytes, value });
  }
}
