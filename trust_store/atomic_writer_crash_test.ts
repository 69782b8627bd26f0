import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { AtomicWriter } from "./mod.ts";
import { readGeneration, swapPayload, tornFilesViaLinks } from "./testdata/swap_payloads.ts";
import { scratchDir } from "./testdata/tmpfs.ts";
import { setTimeout as delay } from "node:timers/promises";

const LOOP = fileURLToPath(new URL("./testdata/swap_loop.ts", import.meta.url));
const KILLS = 30;

function spawnWriter(dir: string, count: number) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", LOOP, dir, String(count)],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return text.split("\n")[0];
}

async function entries(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("a writer SIGKILLed mid-swap leaves the store wholly old or wholly new", async () => {
  const scratch = await scratchDir("atomic-crash-", "32m");
  const dir = scratch.dir;
  if (Deno.uid() === 0) assert.ok(scratch.tmpfs, "as root the test must run on a real tmpfs");
  const writer = new AtomicWriter(dir);
  await writer.write(swapPayload("A"));
  let reads = 0, fileReads = 0, vanished = 0, leftovers = 0, swapsSeen = 0;
  const mixes: string[] = [];
  let stop = false;
  // A reader running all along, through `..data` (resolved once per read) and through links.
  const reader = (async () => {
    let last = "";
    while (!stop) {
      try {
        // `..data` resolved once: the whole tree is one generation.
        const gen = await readGeneration(dir, "data");
        reads++;
        if (gen === "mixed") mixes.push("concurrent snapshot through ..data");
        else if (gen !== last) {
          swapsSeen++;
          last = gen;
        }
      } catch (e) {
        // An old generation removed while being read: not a mix, the reader retries.
        if (e instanceof Deno.errors.NotFound) vanished++;
        else throw e;
      }
      try {
        // Through the links each open resolves `..data` anew: every single file is whole.
        const { files, torn } = await tornFilesViaLinks(dir);
        fileReads += files;
        if (torn) mixes.push(`${torn} torn files through the links`);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) vanished++;
        else throw e;
      }
      await delay(0);
    }
  })();
  try {
    for (let k = 0; k < KILLS; k++) {
      const child = spawnWriter(dir, 500);
      assert.equal(await firstLine(child.stdout), "ready");
      await delay(Math.floor(Math.random() * 250));
      child.kill("SIGKILL");
      const status = await child.status;
      await child.stderr.cancel();
      await child.stdout.cancel().catch(() => {});
      assert.equal(status.signal, "SIGKILL", `run ${k} ended before the kill`);
      // After the kill: wholly A or wholly B, through ..data and through the top-level links.
      const viaData = await readGeneration(dir, "data");
      const viaLinks = await readGeneration(dir, "links");
      assert.notEqual(viaData, "mixed", `run ${k}: ..data holds a mix`);
      assert.equal(viaLinks, viaData, `run ${k}: top-level view differs from ..data`);
      const names = await entries(dir);
      if (
        names.some((n) => n === "..data_tmp") || names.filter((n) => /^\.\.\d/.test(n)).length > 1
      ) {
        leftovers++;
      }
      // The next write cleans every leftover.
      const next = viaData === "A" ? "B" : "A";
      assert.equal((await writer.write(swapPayload(next))).changed, true);
      const after = await entries(dir);
      const ts = after.filter((n) => n.startsWith("..") && n !== "..data");
      assert.equal(ts.length, 1, `run ${k}: leftovers after the next write: ${after.join(" ")}`);
      assert.deepEqual(after.filter((n) => !n.startsWith("..")), ["bundle.crt", "certs", "java"]);
      assert.equal(await readGeneration(dir, "links"), next);
    }
    // An uninterrupted run completes its swaps.
    const child = spawnWriter(dir, 300);
    const out = new TextDecoder().decode((await child.output()).stdout);
    // Every swap changes the store, except a first one that finds its payload already there.
    assert.match(out, /done (299|300)\n/);
  } finally {
    stop = true;
    await reader;
    await scratch.cleanup();
  }
  console.log(
    `kills=${KILLS} snapshotReads=${reads} fileReads=${fileReads} swapsSeen=${swapsSeen} vanished=${vanished} ` +
      `killsLeavingLeftovers=${leftovers} mixes=${mixes.length}`,
  );
  assert.deepEqual(mixes, []);
  assert.ok(reads > KILLS * 2, `reader only managed ${reads} reads`);
  assert.ok(swapsSeen > KILLS, `reader saw only ${swapsSeen} swaps`);
});
