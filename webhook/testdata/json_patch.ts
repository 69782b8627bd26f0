/**
 * A strict RFC 6902 applier for tests that check what a patch produces: `fast-json-patch` with
 * validation on, so an operation on a path that does not exist (a `replace` of a missing member,
 * an index out of range) throws instead of being applied leniently.
 *
 * @module
 */

import jsonpatch from "fast-json-patch";

/** Thrown when an operation is not valid RFC 6902 for the document (fast-json-patch's error). */
export const JsonPatchError: typeof jsonpatch.JsonPatchError = jsonpatch.JsonPatchError;

/** Applies `operations` to a deep copy of `document`, validating each, and returns the copy. */
export function applyJsonPatch<T>(
  document: T,
  operations: readonly { op: string; path: string; value?: unknown }[],
): T {
  const copy = structuredClone(document);
  return jsonpatch.applyPatch(
    copy,
    operations as jsonpatch.Operation[],
    /* validateOperation */ true,
    /* mutateDocument */ true,
  ).newDocument;
}
