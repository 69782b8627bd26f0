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

Deno.test("flags: shutdown drain and expiry margin defaults, and their checks", () => {
  const flags = parseFlags([]);
  assert.equal(flags.shutdownDelayMs, 5_000);
  assert.equal(flags.shutdownTimeoutMs, 10_000);
  assert.equal(flags.svidExpiryMarginMs, 5 * 60_000);
  const set = parseFlags([
    "--shutdown-delay=0s",
    "--shutdown-timeout=30s",
    "--svid-expiry-margin=10m",
  ]);
  assert.deepEqual(
    [set.shutdownDelayMs, set.shutdownTimeoutMs, set.svidExpiryMarginMs],
    [0, 30_000, 600_000],
  );
  assert.throws(
    () => parseFlags(["--shutdown-timeout=0"]),
    /--shutdown-timeout: "0" is not a positive duration/,
  );
  assert.throws(() => parseFlags(["--shutdown-delay=soon"]), UsageError);
});

Deno.test("flags: the controller defaults main.ts repeats are still the controller's own", async () => {
  // Imported here only: main.ts must not load these modules (see tests/webhook_lazy_load_test.ts).
  const { DEFAULT_EXCLUDED_NAMESPACES } = await import("./controller.ts");
  const { DEFAULT_REGISTRATION_RESYNC_MS } = await import("./registrations.ts");
  const flags = parseFlags([]);
  assert.deepEqual(flags.excludedNamespaces, [...DEFAULT_EXCLUDED_NAMESPACES]);
  assert.equal(flags.registrationsResyncMs, DEFAULT_REGISTRATION_RESYNC_MS);
});

Deno.test("flags: --cluster-resource-namespace defaults to cert-manager and takes a namespace", () => {
  assert.equal(parseFlags([]).clusterResourceNamespace, "cert-manager");
  assert.equal(
    parseFlags(["--cluster-resource-namespace=certs-system"]).clusterResourceNamespace,
    "certs-system",
  );
  for (const value of ["", "Not_A_Namespace"]) {
    assert.throws(
      () => parseFlags([`--cluster-resource-namespace=${value}`]),
      (error: Error) =>
        error instanceof UsageError &&
        /--cluster-resource-namespace(: "Not_A_Namespace" is not a namespace name| is empty)/
          .test(error.message),
      value,
    );
  }
});
