/**
 * A minimal RFC 6902 applier (`add`, `replace`) for tests that check what a patch produces.
 *
 * @module
 */

/** Thrown when an operation's path does not resolve. */
export class JsonPatchError extends Error {
  /** Creates the error naming the failing path. */
  constructor(message: string) {
    super(message);
    this.name = "JsonPatchError";
  }
}

/** Applies `add`/`replace` operations to a deep copy of `document` and returns it. */
export function applyJsonPatch<T>(
  document: T,
  operations: readonly { op: string; path: string; value?: unknown }[],
): T {
  const root = structuredClone(document) as unknown;
  for (const { op, path, value } of operations) {
    const tokens = path.split("/").slice(1).map((t) =>
      t.replaceAll("~1", "/").replaceAll("~0", "~")
    );
    const last = tokens.pop();
    if (last === undefined) throw new JsonPatchError(`empty path in ${op}`);
    let target = root as Record<string, unknown> | unknown[];
    for (const token of tokens) {
      const next = (target as Record<string, unknown>)[token];
      if (typeof next !== "object" || next === null) {
        throw new JsonPatchError(`${op} ${path}: ${token} does not exist`);
      }
      target = next as Record<string, unknown> | unknown[];
    }
    if (Array.isArray(target)) {
      if (op === "add" && last === "-") target.push(value);
      else if (op === "replace" && Number(last) < target.length) target[Number(last)] = value;
      else if (op === "add") target.splice(Number(last), 0, value);
      else throw new JsonPatchError(`${op} ${path}: index out of range`);
    } else {
      if (op === "replace" && !(last in target)) {
        throw new JsonPatchError(`replace ${path}: ${last} does not exist`);
      }
      if (op === "add" && last in target && target[last] !== null) {
        // RFC 6902 add replaces an existing member; the webhook relies on it only for nulls.
        throw new JsonPatchError(`add ${path}: ${last} already exists`);
      }
      target[last] = value;
    }
  }
  return root as T;
}
