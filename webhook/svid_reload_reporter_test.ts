import assert from "node:assert/strict";
import { createLogger } from "../cli/mod.ts";
import { SvidExpiredError, SvidFileError, SvidKeyMismatchError } from "../spire/mod.ts";
import { reloadProblemKey, SvidReloadReporter } from "./svid_reload_reporter.ts";

function reporter() {
  const lines: { level: string; msg: string; error?: string }[] = [];
  let now = 0;
  let count = 0;
  const r = new SvidReloadReporter({
    log: createLogger("info", (line) => lines.push(JSON.parse(line))),
    count: () => count++,
    graceMs: 1_000,
    now: () => now,
  });
  return {
    r,
    lines,
    count: () => count,
    advance: (ms: number) => now += ms,
  };
}

Deno.test("reload reporter: a torn write within the grace is neither counted nor warned", () => {
  const { r, lines, count, advance } = reporter();
  r.failed(new SvidKeyMismatchError("/c"), true);
  advance(250);
  r.failed(new SvidKeyMismatchError("/c"), true);
  r.recovered();
  assert.equal(count(), 0);
  assert.equal(lines.length, 0);
});

Deno.test("reload reporter: a problem that stays is warned once and counted on every read", () => {
  const { r, lines, count, advance } = reporter();
  for (let i = 0; i < 20; i++) {
    r.failed(new SvidFileError("/c", "/c/svid.pem", "file is empty"), true);
    advance(250);
  }
  assert.equal(count(), 16, "every read after the first second");
  assert.deepEqual(lines.map((l) => [l.level, l.msg]), [
    ["warn", "SVID reload failed; serving the last good SVID"],
  ]);
  assert.match(lines[0].error!, /svid\.pem: file is empty/);
  // A different problem is a new warning; the first one again is not.
  r.failed(new SvidKeyMismatchError("/c"), true);
  r.failed(new SvidFileError("/c", "/c/svid.pem", "file is empty"), true);
  assert.equal(lines.length, 2);
  // The recovery is logged once; the same problem later is reported again.
  r.recovered();
  r.recovered();
  assert.deepEqual(lines.slice(2).map((l) => [l.level, l.msg]), [[
    "info",
    "SVID files usable again",
  ]]);
  r.failed(new SvidFileError("/c", "/c/svid.pem", "file is empty"), true);
  advance(1_000);
  r.failed(new SvidFileError("/c", "/c/svid.pem", "file is empty"), true);
  assert.equal(lines.length, 4);
});

Deno.test("reload reporter: missing files before the first SVID are waited for; garbage is not", () => {
  const { r, lines, count, advance } = reporter();
  for (let i = 0; i < 10; i++) {
    r.failed(new SvidFileError("/c", "/c/svid.pem", "file does not exist"), false);
    r.failed(new Deno.errors.NotFound("watch '/c'"), false);
    advance(500);
  }
  assert.equal(count(), 0);
  assert.equal(lines.length, 0);
  r.failed(new SvidFileError("/c", "/c/svid.pem", "not PEM"), false);
  advance(1_000);
  r.failed(new SvidFileError("/c", "/c/svid.pem", "not PEM"), false);
  assert.deepEqual(lines.map((l) => l.msg), ["SVID files not usable"]);
  assert.equal(count(), 1);
});

Deno.test("reload reporter: the time of the check does not make an expired leaf a new problem", () => {
  const a = new SvidExpiredError(
    "/c",
    "expired at 2026-01-01T00:00:00.000Z (now 2026-01-02T00:00:00.000Z)",
  );
  const b = new SvidExpiredError(
    "/c",
    "expired at 2026-01-01T00:00:00.000Z (now 2026-01-02T00:00:01.500Z)",
  );
  assert.equal(reloadProblemKey(a), reloadProblemKey(b));
  assert.notEqual(reloadProblemKey(a), reloadProblemKey(new SvidKeyMismatchError("/c")));
});
