/**
 * Cost of accepting an SVID set: `loadSvidSet` (node:crypto parse, key match, chain check) against
 * just reading the three files, and against parsing the same certificates with `@peculiar/x509`.
 *
 * ./scripts/deno bench -A spire/svid_bench.ts
 */
import { join } from "node:path";
import { x509 } from "../workloads/x509.ts";
import { DevCa, writeSvidFiles } from "../workloads/dev_ca.ts";
import { loadSvidSet } from "./mod.ts";

const dir = await Deno.makeTempDir({ prefix: "spire-svid-bench-" });
const ca = await DevCa.create();
const svid = await ca.issue({
  spiffeId: "spiffe://example.org/workload/server",
  dnsNames: ["server-service"],
  ttlMs: 3_600_000,
});
await writeSvidFiles(dir, { ...svid, bundlePem: ca.certPem });
const names = ["svid.pem", "svid_key.pem", "svid_bundle.pem"].map((n) => join(dir, n));

Deno.bench("read the three files (baseline)", { group: "svid", baseline: true }, async () => {
  await Promise.all(names.map((n) => Deno.readTextFile(n)));
});

Deno.bench("loadSvidSet (node:crypto)", { group: "svid" }, async () => {
  await loadSvidSet(dir);
});

Deno.bench("read + parse both certificates with @peculiar/x509", { group: "svid" }, async () => {
  const [cert, , bundle] = await Promise.all(names.map((n) => Deno.readTextFile(n)));
  new x509.X509Certificate(cert);
  new x509.X509Certificate(bundle);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
