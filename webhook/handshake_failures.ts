/**
 * Failed TLS handshakes on the HTTPS port, counted by a bounded reason and logged at warn without
 * flooding: the first failure is logged at once, the ones after it are only counted, and at most
 * one summary line per interval gives how many were left out.
 *
 * Why a summary rather than one line each: a port scanner or a client with the wrong CA retries
 * many times a second, and a line per handshake would bury everything else (at the suite's 25
 * bad handshakes in well under a second the log would grow by 25 lines; with this reporter it
 * grows by one warning and one summary). Why 60 s: it matches the usual Prometheus scrape and
 * alert evaluation granularity, so the log never says less than the counter already does.
 *
 * The reasons are a fixed set, so the counter's label cannot grow with client input:
 *
 * | reason | what the server saw |
 * | --- | --- |
 * | `client_alert` | the client refused the certificate (unknown CA, bad certificate, ...) |
 * | `protocol` | not TLS, or a version or message the server does not accept |
 * | `closed` | the connection ended or was reset mid-handshake |
 * | `timeout` | the handshake did not finish in time |
 * | `other` | anything else |
 *
 * @module
 */

import type { Logger } from "../cli/mod.ts";

/** Why a handshake failed (a bounded label value). */
export type HandshakeFailureReason = "client_alert" | "protocol" | "closed" | "timeout" | "other";

/** Every {@link HandshakeFailureReason}. */
export const HANDSHAKE_FAILURE_REASONS: readonly HandshakeFailureReason[] = [
  "client_alert",
  "protocol",
  "closed",
  "timeout",
  "other",
];

/** Default interval between summary lines (ms). */
export const DEFAULT_HANDSHAKE_LOG_INTERVAL_MS = 60_000;

/**
 * The reason of a `tlsClientError`, from its `code` (Node's `ERR_SSL_*` and socket codes, which
 * Deno's `node:tls` uses too) and, failing that, its message.
 *
 * @param error the error `tlsClientError` carried
 */
export function handshakeFailureReason(error: Error & { code?: unknown }): HandshakeFailureReason {
  const code = typeof error.code === "string" ? error.code : "";
  const message = error.message;
  if (/ALERT/.test(code) || /fatal alert/i.test(message)) return "client_alert";
  if (code === "ETIMEDOUT" || /timed? ?out/i.test(message)) return "timeout";
  if (["ECONNRESET", "EPIPE", "ECONNABORTED"].includes(code) || /hang up|reset/i.test(message)) {
    return "closed";
  }
  if (code.startsWith("ERR_SSL_") || /wrong version|corrupt message|protocol/i.test(message)) {
    return "protocol";
  }
  return "other";
}

/** Timer functions (the global ones by default; a unit test may pass its own). */
export interface ReporterTimers {
  /** Schedules `fn` after `ms`; returns a handle for `clear`. */
  set(fn: () => void, ms: number): unknown;
  /** Cancels a timer from `set`. */
  clear(handle: unknown): void;
}

/** Options of {@link HandshakeFailureReporter}. */
export interface HandshakeFailureReporterOptions {
  /** Where the warnings go. */
  log: Logger;
  /** Called once per failure (the metric). */
  count: (reason: HandshakeFailureReason) => void;
  /** At most one summary line per this many ms (default 60 s). */
  intervalMs?: number;
  /** Timer functions (default the global ones). */
  timers?: ReporterTimers;
}

/** Counts every failed handshake and logs the first, then one summary per interval. */
export class HandshakeFailureReporter {
  readonly #log: Logger;
  readonly #count: (reason: HandshakeFailureReason) => void;
  readonly #intervalMs: number;
  readonly #timers: ReporterTimers;
  #timer: unknown;
  #suppressed = new Map<HandshakeFailureReason, number>();

  /**
   * Creates the reporter.
   *
   * @param options log, counter, interval and timers
   */
  constructor(options: HandshakeFailureReporterOptions) {
    this.#log = options.log;
    this.#count = options.count;
    this.#intervalMs = options.intervalMs ?? DEFAULT_HANDSHAKE_LOG_INTERVAL_MS;
    this.#timers = options.timers ?? {
      set: (fn, ms) => setTimeout(fn, ms),
      clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    };
  }

  /** Records one failed handshake. */
  report(error: Error & { code?: unknown }): void {
    const reason = handshakeFailureReason(error);
    this.#count(reason);
    if (this.#timer !== undefined) {
      this.#suppressed.set(reason, (this.#suppressed.get(reason) ?? 0) + 1);
      return;
    }
    this.#log.warn("TLS handshake failed", { reason, error: error.message });
    this.#timer = this.#timers.set(() => this.#flush(), this.#intervalMs);
  }

  /** Logs what is left out so far (if anything) and stops the timer. */
  close(): void {
    if (this.#timer !== undefined) this.#timers.clear(this.#timer);
    this.#timer = undefined;
    this.#summary();
  }

  #summary(): boolean {
    if (this.#suppressed.size === 0) return false;
    const byReason = Object.fromEntries(this.#suppressed);
    const suppressed = [...this.#suppressed.values()].reduce((a, b) => a + b, 0);
    this.#suppressed.clear();
    this.#log.warn("TLS handshakes failed", {
      suppressed,
      byReason,
      intervalSeconds: this.#intervalMs / 1000,
    });
    return true;
  }

  #flush(): void {
    // A summary opens the next interval; a quiet interval ends the window, so the next failure
    // is logged at once with its own message.
    this.#timer = this.#summary()
      ? this.#timers.set(() => this.#flush(), this.#intervalMs)
      : undefined;
  }
}
