/**
 * Makes a certificate reload that keeps failing visible without repeating itself: one warning
 * per distinct problem, a counter that moves with every failed read, and one info line when the
 * files are usable again.
 *
 * Two kinds of rejected read are not problems:
 *
 * - **Files not there yet**, before the first good set: the webhook starts before its SVID
 *   exists (its own controller creates the ClusterSPIFFEID), and the server logs "waiting for
 *   SVID" once for that.
 * - **A torn write**: spiffe-helper rewrites cert, key and bundle one after the other, so a read
 *   can catch a new certificate with the old key. The watcher retries 250 ms later and the set is
 *   whole again. A failure is therefore only counted and warned about once the files have been
 *   unusable for {@link DEFAULT_RELOAD_GRACE_MS} (1 s, four retries): long enough to cover the
 *   three writes of a rotation, short enough that a real problem shows within a second.
 *
 * "Distinct" is the error's name and message with timestamps taken out: an expired leaf's message
 * carries the time of the check, and that alone must not make a new warning. A recovery forgets
 * what was warned, so the same problem coming back later is reported again.
 *
 * @module
 */

import type { Logger } from "../cli/mod.ts";
import { SvidFileError } from "../spire/mod.ts";

/** How long the files must stay unusable before a failure counts (ms). */
export const DEFAULT_RELOAD_GRACE_MS = 1_000;

/** Options of {@link SvidReloadReporter}. */
export interface SvidReloadReporterOptions {
  /** Where warnings and the recovery go. */
  log: Logger;
  /** Called for every failure that counts (the metric). */
  count: () => void;
  /** Grace for torn writes (default 1 s). */
  graceMs?: number;
  /** The clock (default `Date.now`). */
  now?: () => number;
}

/** Whether the error says the files (or their directory) are not there. */
function isMissing(error: Error): boolean {
  return error instanceof Deno.errors.NotFound ||
    (error instanceof SvidFileError && /file does not exist$/.test(error.message));
}

/** The part of an error that identifies the problem: no timestamps. */
export function reloadProblemKey(error: Error): string {
  const text = error.message.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z/g, "<time>");
  return `${error.name}: ${text}`;
}

/** Turns the watcher's rejected reads into warnings, a counter and a recovery line. */
export class SvidReloadReporter {
  readonly #log: Logger;
  readonly #count: () => void;
  readonly #graceMs: number;
  readonly #now: () => number;
  #since: number | undefined;
  #warned = new Set<string>();

  /**
   * Creates the reporter.
   *
   * @param options log, counter, grace and clock
   */
  constructor(options: SvidReloadReporterOptions) {
    this.#log = options.log;
    this.#count = options.count;
    this.#graceMs = options.graceMs ?? DEFAULT_RELOAD_GRACE_MS;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Records one rejected read.
   *
   * @param error why the read was rejected
   * @param serving whether a good set is being served (files missing before the first one are
   *   waited for, not reported)
   */
  failed(error: Error, serving: boolean): void {
    if (!serving && isMissing(error)) {
      this.#log.debug("SVID files not there yet", { error: error.message });
      return;
    }
    const now = this.#now();
    this.#since ??= now;
    if (now - this.#since < this.#graceMs) {
      this.#log.debug("SVID files not usable; retrying", { error: error.message });
      return;
    }
    this.#count();
    const key = reloadProblemKey(error);
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log.warn(
      serving ? "SVID reload failed; serving the last good SVID" : "SVID files not usable",
      { error: error.message },
    );
  }

  /** Records a good read after rejected ones: logs the recovery once if anything was warned. */
  recovered(): void {
    if (this.#warned.size > 0) {
      this.#log.info("SVID files usable again", { problems: this.#warned.size });
    }
    this.#warned.clear();
    this.#since = undefined;
  }
}
