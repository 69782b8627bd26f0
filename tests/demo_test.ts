/**
 * `deno task demo` as a user runs it: a bounded run shows rotations and the CA rotation with no
 * failed request and leaves nothing behind; Ctrl-C (SIGINT) stops it cleanly.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Go's `log.LstdFlags` prefix the client puts on each of its lines. */
const GO_LOG = String.raw`\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `;
const REPORT_HEADER = new RegExp(`^${GO_LOG}Certificate Information:$`, "m");

function demo(args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["task", "demo", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

async function gone(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return false;
  } catch (error) {
    return error instanceof Deno.errors.NotFound;
  }
}

Deno.test("deno task demo --duration 25s: rotations, a CA rotation, zero failures, nothing left", async () => {
  const out = await demo(["--duration", "25s", "--ca-rotation-at", "9s"]).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `exit ${out.code}\n${stdout}\n${stderr}`);
  const notAfters = new Set(
    [...stdout.matchAll(new RegExp(`^${GO_LOG} {2}Not After: (\\S+)$`, "gm"))].map((m) => m[1]),
  );
  assert.ok(notAfters.size >= 2, `distinct Not After: ${[...notAfters]}`);
  assert.match(stdout, /dev CA \(stand-in for SPIRE\)/);
  assert.match(stdout, /CA rotation reached the trust store: 2 CAs/);
  assert.match(stdout, /now issuing leaves from CA 2/);
  assert.doesNotMatch(stdout, /Request to \S+ failed/);
  // The client's lines, as Go's log.Printf writes them: each with its own prefix.
  const client = stdout.split("\n").filter((l) => !/^\[(demo|SPIRE|dev CA[^\]]*)\] /.test(l));
  for (const line of client.filter(Boolean)) assert.match(line, new RegExp(`^${GO_LOG}`));
  assert.match(stdout, new RegExp(`^${GO_LOG}Making request #1$`, "m"));
  assert.match(stdout, new RegExp(`^${GO_LOG} {2}Subject: CN=server-service, O=SPIRE, C=US$`, "m"));
  assert.match(stdout, new RegExp(`^${GO_LOG} {2}Time until expiration: \\d+s$`, "m"));
  assert.match(stdout, /\[demo\] done: \d+ requests ok, 0 failed/);
  // Requests keep succeeding after leaves come from the new CA.
  const afterSwitch = stdout.slice(stdout.indexOf("now issuing leaves from CA 2"));
  assert.ok((afterSwitch.match(new RegExp(REPORT_HEADER, "gm")) ?? []).length >= 2);
  const dir = /working directory (\S+)/.exec(stdout)?.[1];
  assert.ok(dir, "the demo names its working directory");
  assert.ok(await gone(dir), `${dir} was removed`);
});

Deno.test("deno task demo stops on SIGINT and removes its directory", async () => {
  const child = demo([]).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  const deadline = Date.now() + 30_000;
  while (!REPORT_HEADER.test(stdout) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  assert.match(stdout, REPORT_HEADER);
  // `deno task` runs the demo as a child: signal the whole group as a terminal's Ctrl-C does.
  child.kill("SIGINT");
  // A terminal delivers Ctrl-C to the whole group and `deno task` forwards it too: the same
  // press arriving twice must still stop cleanly, not force the exit (`deno task` itself may
  // already be gone, the demo still running).
  await new Promise((resolve) => setTimeout(resolve, 20));
  try {
    child.kill("SIGINT");
  } catch { /* deno task already exited */ }
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  const status = await child.status;
  clearTimeout(timer);
  const errors = await stderr;
  assert.match(stdout, /\[demo\] done: .*removed/, `exit ${status.code}; stderr:\n${errors}`);
  assert.equal(status.code, 0, `${stdout}\n${errors}`);
  const dir = /working directory (\S+)/.exec(stdout)?.[1];
  assert.ok(dir && await gone(dir), `${dir} was removed`);
});
