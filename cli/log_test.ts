import assert from "node:assert/strict";
import { createLogger, LOG_KEYS, SILENT_LOGGER } from "./mod.ts";

Deno.test("log: a child logger adds its fields to every line; a line's own fields win", () => {
  const lines: Record<string, unknown>[] = [];
  const root = createLogger("info", (line) => lines.push(JSON.parse(line)));
  const child = root.with({ [LOG_KEYS.object]: "ns/a", [LOG_KEYS.name]: "a" });
  child.with({ [LOG_KEYS.volumeId]: "v1" }).warn("list failed", { [LOG_KEYS.name]: "b" });
  child.debug("not written below info");
  root.info("plain");
  assert.deepEqual(lines.map(({ time: _, ...rest }) => rest), [
    { level: "warn", msg: "list failed", object: "ns/a", name: "b", volumeId: "v1" },
    { level: "info", msg: "plain" },
  ]);
  assert.equal(SILENT_LOGGER.with({ a: 1 }), SILENT_LOGGER);
});
