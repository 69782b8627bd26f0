import assert from "node:assert/strict";
import {
  answerMode,
  type FlagTable,
  modeOf,
  parseFlagTable,
  renderFlags,
  UsageError,
} from "./flags.ts";

const TABLE = {
  port: {
    type: "number",
    arg: "N",
    min: 0,
    max: 65535,
    default: "8443",
    help: "port (default {default})",
  },
  wait: { type: "duration", arg: "D", default: "5m", help: "how long" },
  every: { type: "duration", bareSeconds: true, allowZero: true, default: "1s", help: "interval" },
  level: { type: "enum", values: ["debug", "info"], default: "info", help: "a\nb" },
  on: { type: "boolean", default: "true", help: "switch", label: "--on=false" },
  names: { type: "list", help: "names" },
  dir: { type: "string", nonEmpty: true, default: "/d", help: "dir" },
  kube: { type: "string", help: "optional" },
  help: { type: "boolean", label: "--help", help: "" },
} as const satisfies FlagTable;

function usage(args: string[]): string {
  try {
    parseFlagTable(TABLE, args);
  } catch (error) {
    assert.ok(error instanceof UsageError);
    return error.message;
  }
  throw new Error(`accepted ${args}`);
}

Deno.test("flags: defaults are parsed like values; booleans and lists are always set", () => {
  assert.deepEqual(parseFlagTable(TABLE, []), {
    port: 8443,
    wait: 300_000,
    every: 1_000,
    level: "info",
    on: true,
    names: [],
    dir: "/d",
    kube: undefined,
    help: false,
  });
});

Deno.test("flags: booleans as Go's flag package reads them, durations, lists", () => {
  const flags = parseFlagTable(TABLE, [
    "--on=false",
    "--help",
    "--wait=1.5s",
    "--every=2",
    "--names=a, b,,c",
    "--port",
    "9443",
  ]);
  assert.equal(flags.on, false);
  assert.equal(flags.help, true);
  assert.equal(flags.wait, 1_500);
  assert.equal(flags.every, 2_000);
  assert.deepEqual(flags.names, ["a", "b", "c"]);
  assert.equal(flags.port, 9443);
});

Deno.test("flags: a bad value names the flag, the value and what it takes", () => {
  assert.equal(usage(["--port=70000"]), '--port: "70000" is not an integer from 0 to 65535');
  assert.equal(usage(["--wait=5"]), '--wait: "5" is not a positive duration such as 2s or 5m');
  assert.equal(usage(["--wait=0s"]), '--wait: "0s" is not a positive duration such as 2s or 5m');
  assert.equal(usage(["--level=x"]), '--level: "x" is not debug or info');
  assert.equal(usage(["--on=maybe"]), '--on: "maybe" is not true or false');
  assert.equal(usage(["--dir= "]), "--dir is empty");
  assert.match(usage(["--nope"]), /Unknown option '--nope'/);
  assert.match(usage(["positional"]), /positional/);
});

Deno.test("flags: help lines in one column, continuation lines under the first", () => {
  assert.equal(
    renderFlags({ port: TABLE.port, level: TABLE.level, on: TABLE.on, help: TABLE.help }),
    [
      "  --port N                    port (default 8443)",
      "  --level                     a",
      "                              b",
      "  --on=false                  switch",
      "  --help",
    ].join("\n"),
  );
});

Deno.test("modes: --help before --version before --self-test; each answered with exit 0", async () => {
  assert.equal(modeOf({ help: true, version: true, "self-test": true }), "help");
  assert.equal(modeOf({ version: true, "self-test": true }), "version");
  assert.equal(modeOf({ "self-test": true }), "self-test");
  assert.equal(modeOf({}), "run");
  const out: string[] = [];
  const log = console.log;
  console.log = (line: string) => out.push(line);
  let tested = 0;
  const answers = {
    program: "p",
    version: "1.2.3",
    help: "usage",
    selfTest: () => Promise.resolve(void tested++),
  };
  try {
    assert.equal(await answerMode("help", answers), 0);
    assert.equal(await answerMode("version", answers), 0);
    assert.equal(await answerMode("self-test", answers), 0);
    assert.equal(await answerMode("run", answers), undefined);
  } finally {
    console.log = log;
  }
  assert.deepEqual(out, ["usage", "p 1.2.3", "p self-test ok"]);
  assert.equal(tested, 1);
});
