/**
 * Two payloads for the crash test and a checker that a directory holds wholly one of them.
 * Both share top-level entries (`bundle.crt`, `certs`, `java`) but differ in every file's
 * content and in the set of files under `certs/`.
 *
 * @module
 */

import { join } from "node:path";

/** A generation marker. */
export type Generation = "A" | "B";

/** Builds the payload of one generation. */
export function swapPayload(gen: Generation): Map<string, Uint8Array> {
  const enc = new TextEncoder();
  const p = new Map<string, Uint8Array>();
  const n = gen === "A" ? 24 : 31;
  const line = (name: string) => enc.encode(`${gen}:${name}\n`.repeat(120));
  p.set("bundle.crt", line("bundle"));
  for (let i = 0; i < n; i++) p.set(`certs/${gen.toLowerCase()}-${i}.pem`, line(`cert${i}`));
  p.set("java/cacerts", line("java"));
  return p;
}

async function readTree(root: string, prefix = "", out = new Map<string, Uint8Array>()) {
  for await (const e of Deno.readDir(join(root, prefix))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    const st = await Deno.stat(join(root, rel));
    if (st.isDirectory) await readTree(root, rel, out);
    else out.set(rel, await Deno.readFile(join(root, rel)));
  }
  return out;
}

function same(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length || !w.every((x, i) => x === v[i])) return false;
  }
  return true;
}

/**
 * Reads the store once through `..data` (resolved once) and once through the top-level
 * entries, and returns the generation each view is, or "mixed". Throws NotFound when the
 * directory vanished under the reader (an old generation being removed), which is not a mix.
 */
export async function readGeneration(
  dir: string,
  via: "data" | "links",
): Promise<Generation | "mixed"> {
  let tree: Map<string, Uint8Array>;
  if (via === "data") {
    // The snapshot protocol of atomic_writer.ts: resolve `..data`, read under it, then confirm
    // `..data` still points there. A generation removed while it was being listed can yield a
    // partial listing without any error; the re-check turns that into NotFound (retry).
    const target = await Deno.readLink(join(dir, "..data"));
    tree = await readTree(join(dir, target));
    if (await Deno.readLink(join(dir, "..data")) !== target) {
      throw new Deno.errors.NotFound(`..data moved from ${target} while it was read`);
    }
  } else {
    tree = new Map();
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith("..")) continue;
      const st = await Deno.stat(join(dir, e.name));
      if (st.isDirectory) {
        for (const [k, v] of await readTree(join(dir, e.name))) tree.set(`${e.name}/${k}`, v);
      } else tree.set(e.name, await Deno.readFile(join(dir, e.name)));
    }
  }
  if (same(tree, swapPayload("A"))) return "A";
  if (same(tree, swapPayload("B"))) return "B";
  return "mixed";
}

/**
 * Reads every file through the top-level entries, one open at a time, and returns how many
 * files were torn (content of neither generation for their path). Across a swap, different
 * files may come from different generations: each single file is whole.
 */
export async function tornFilesViaLinks(dir: string): Promise<{ files: number; torn: number }> {
  const a = swapPayload("A");
  const b = swapPayload("B");
  let files = 0, torn = 0;
  const visit = async (rel: string): Promise<void> => {
    const st = await Deno.stat(join(dir, rel));
    if (st.isDirectory) {
      for await (const e of Deno.readDir(join(dir, rel))) await visit(`${rel}/${e.name}`);
      return;
    }
    const bytes = await Deno.readFile(join(dir, rel));
    files++;
    const got = new Map([[rel, bytes]]);
    const matches = [a.get(rel), b.get(rel)].some((want) =>
      want !== undefined && same(got, new Map([[rel, want]]))
    );
    if (!matches) torn++;
  };
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.startsWith("..")) await visit(e.name);
  }
  return { files, torn };
}
