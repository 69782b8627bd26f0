import assert from "node:assert/strict";
import { createLogger } from "../cli/mod.ts";
import {
  HANDSHAKE_FAILURE_REASONS,
  type HandshakeFailureReason,
  handshakeFailureReason,
  HandshakeFailureReporter,
} from "./handshake_failures.ts";

const failure = (message: string, code?: string) => Object.assign(new Error(message), { code });

Deno.test("handshake failures: the errors node:tls reports map to a few fixed reasons", () => {
  const cases: [Error, HandshakeFailureReason][] = [
    [failure("received fatal alert: UnknownCA", "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"), "client_alert"],
    [
      failure(
        "received corrupt message of type InvalidContentType",
        "ERR_SSL_WRONG_VERSION_NUMBER",
      ),
      "protocol",
    ],
    [
      failure("peer is incompatible: NoCipherSuitesInCommon", "ERR_SSL_NO_SHARED_CIPHER"),
      "protocol",
    ],
    [failure("socket hang up", "ECONNRESET"), "closed"],
    [failure("TLS handshake timeout"), "timeout"],
    [failure("something new"), "other"],
  ];
  for (const [error, reason] of cases) {
    assert.equal(handshakeFailureReason(error), reason, error.message);
    assert.ok(HANDSHAKE_FAILURE_REASONS.includes(reason));
  }
});

/** Timers the test fires by hand: the only collaborator faked here. */
function manualTimers() {
  const pending = new Map<number, () => void>();
  let next = 0;
  return {
    pending,
    timers: {
      set: (fn: () => void) => (pending.set(++next, fn), next),
      clear: (handle: unknown) => void pending.delete(handle as number),
    },
    fire() {
      const due = [...pending.entries()];
      pending.clear();
      for (const [, fn] of due) fn();
    },
  };
}

Deno.test("handshake failures: every one counted, the first logged, then one summary per interval", () => {
  const lines: { level: string; msg: string; suppressed?: number; byReason?: object }[] = [];
  const counted: HandshakeFailureReason[] = [];
  const clock = manualTimers();
  const reporter = new HandshakeFailureReporter({
    log: createLogger("debug", (line) => lines.push(JSON.parse(line))),
    count: (reason) => counted.push(reason),
    intervalMs: 60_000,
    timers: clock.timers,
  });
  const alert = failure("received fatal alert: UnknownCA", "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA");
  const garbage = failure("wrong version number", "ERR_SSL_WRONG_VERSION_NUMBER");
  reporter.report(alert);
  for (let i = 0; i < 9; i++) reporter.report(garbage);
  assert.equal(counted.length, 10);
  assert.deepEqual(lines.map((l) => [l.level, l.msg]), [["warn", "TLS handshake failed"]]);

  // The interval ends: one summary with what was left out, and the next interval opens.
  clock.fire();
  assert.equal(lines.length, 2);
  assert.equal(lines[1].msg, "TLS handshakes failed");
  assert.equal(lines[1].suppressed, 9);
  assert.deepEqual(lines[1].byReason, { protocol: 9 });
  reporter.report(alert);
  assert.equal(lines.length, 2, "still inside the summary's interval");

  // A quiet interval closes the window: the next failure is logged at once again.
  clock.fire();
  assert.equal(lines.length, 3);
  assert.deepEqual(lines[2].byReason, { client_alert: 1 });
  clock.fire();
  assert.equal(lines.length, 3, "nothing left out, no summary");
  assert.equal(clock.pending.size, 0);
  reporter.report(garbage);
  assert.deepEqual(lines.at(-1)?.msg, "TLS handshake failed");

  // close() reports what is pending and leaves no timer behind.
  reporter.report(garbage);
  reporter.close();
  assert.equal(lines.at(-1)?.suppressed, 1);
  assert.equal(clock.pending.size, 0);
  assert.equal(counted.length, 13);
});
