import assert from "node:assert/strict";
import { parseFlags, UsageError } from "./main.ts";

Deno.test("flags: registrations are off by default and re-applied every 5 minutes", () => {
  const flags = parseFlags([]);
  assert.equal(flags.registrationsDir, "");
  assert.equal(flags.registrationsResyncMs, 5 * 60_000);
});

Deno.test("flags: --registrations-dir and --registrations-resync durations", () => {
  const flags = parseFlags(["--registrations-dir=/etc/r", "--registrations-resync=2s"]);
  assert.equal(flags.registrationsDir, "/etc/r");
  assert.equal(flags.registrationsResyncMs, 2_000);
  assert.equal(parseFlags(["--registrations-resync=500ms"]).registrationsResyncMs, 500);
  assert.equal(parseFlags(["--registrations-resync=1h"]).registrationsResyncMs, 3_600_000);
});

Deno.test("flags: bad registrations settings are refused with the fix", () => {
  for (const value of ["5", "0s", "-1m", "1d", ""]) {
    assert.throws(
      () => parseFlags([`--registrations-resync=${value}`]),
      (error: Error) =>
        error instanceof UsageError &&
        /--registrations-resync: .* is not a positive duration such as 2s or 5m/.test(
          error.message,
        ),
      value,
    );
  }
  assert.throws(
    () => parseFlags(["--registrations-dir=/etc/r", "--controller=false"]),
    /--registrations-dir needs the controller; drop --controller=false/,
  );
});
