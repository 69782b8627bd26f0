import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { KeyNotFoundError, SourceError } from "../api/mod.ts";
import { CsiError, SOURCE_STATUS, toCsiError } from "./errors.ts";

Deno.test("a source problem fails a first publish with the status its reason names", () => {
  assert.equal(toCsiError(new SourceError("bad ref")).code, status.FAILED_PRECONDITION);
  const missing = toCsiError(new SourceError("gone", { reason: "SourceNotFound" }), " (pod a/b)");
  assert.equal(missing.code, status.NOT_FOUND);
  assert.equal(missing.message, "gone (pod a/b)");
  assert.ok(missing.cause instanceof SourceError, "the source error is kept as the cause");
  assert.equal(
    toCsiError(new SourceError("403", { reason: "Forbidden" })).code,
    status.PERMISSION_DENIED,
  );
  assert.equal(
    toCsiError(new SourceError("x", { reason: "SourceUnreadable" })).code,
    status.UNAVAILABLE,
  );
  assert.equal(
    toCsiError(new KeyNotFoundError("no key", { object: "Secret a/b", keys: [], present: [] }))
      .code,
    status.FAILED_PRECONDITION,
  );
  for (const code of Object.values(SOURCE_STATUS)) assert.notEqual(code, status.OK);
});

Deno.test("a CsiError passes unchanged; anything else takes the fallback code", () => {
  const own = new CsiError(status.INVALID_ARGUMENT, "volume_id is required");
  assert.equal(toCsiError(own, " (ignored)"), own);
  assert.equal(toCsiError(new Error("disk full")).code, status.FAILED_PRECONDITION);
  assert.equal(toCsiError("odd", "", status.INTERNAL).code, status.INTERNAL);
});
