import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { needsTools, runSpiffeHelper, startSpire, waitFor } from "./mod.ts";

function splitPem(text: string): X509Certificate[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [])
    .map((pem) => new X509Certificate(pem));
}

/** Reads the three files and checks that they form a consistent SVID set. */
async function readSvidSet(files: { svid: string; key: string; bundle: string }) {
  const [leaf, ...intermediates] = splitPem(await Deno.readTextFile(files.svid));
  const key = createPrivateKey(await Deno.readTextFile(files.key));
  const roots = splitPem(await Deno.readTextFile(files.bundle));
  return { leaf, intermediates, key, roots };
}

Deno.test({
  name: "SPIRE issues a 10 s SVID that spiffe-helper writes and rotates",
  ...needsTools(["spire-server", "spire-agent", "spiffe-helper"]),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const started = Date.now();
    const spire = await startSpire({ trustDomain: "example.org" });
    console.log(`spire healthy in ${Date.now() - started} ms`);
    const certRoot = await Deno.makeTempDir({ prefix: "spire-cacerts-svids-" });
    const helpers: { stop(): Promise<void> }[] = [];
    try {
      const uid = Deno.uid();
      // Two entries match this process (same uid); the hint tells spiffe-helper which to write.
      await spire.createEntry({
        spiffeId: "/workload/server",
        selectors: [`unix:uid:${uid}`],
        dnsNames: ["server-service", "server-service.spiffe-demo"],
        x509SvidTtlSeconds: 10,
        hint: "server",
      });
      await spire.createEntry({
        spiffeId: "/workload/client",
        selectors: [`unix:uid:${uid}`],
        x509SvidTtlSeconds: 60,
        hint: "client",
      });

      const server = await runSpiffeHelper({
        agentSocketPath: spire.agentSocketPath,
        certDir: join(certRoot, "server"),
        hint: "server",
      });
      helpers.push(server);

      let first: Awaited<ReturnType<typeof readSvidSet>> | undefined;
      await t.step("files appear with the server SVID, its key and the bundle", async () => {
        await server.waitForFiles();
        // spiffe-helper rewrites files in place: retry until the three files agree.
        first = await waitFor("a consistent SVID set", async () => {
          const set = await readSvidSet(server.files);
          return set.leaf.checkPrivateKey(set.key) ? set : undefined;
        }, { timeoutMs: 10_000 });
        assert.equal(
          first.leaf.subjectAltName?.includes("URI:spiffe://example.org/workload/server"),
          true,
        );
        assert.match(first.leaf.subject, /CN=server-service/);
        const lifetime = Date.parse(first.leaf.validTo) - Date.parse(first.leaf.validFrom);
        // NotBefore is back-dated 10 s: a 10 s TTL gives a 20 s span.
        assert.ok(lifetime <= 21_000, `lifetime ${lifetime} ms`);
        const bundle = splitPem(await spire.bundlePem());
        assert.deepEqual(
          first.roots.map((root) => root.fingerprint256),
          bundle.map((root) => root.fingerprint256),
        );
        const issuer = first.intermediates.at(-1) ?? first.leaf;
        assert.ok(
          first.roots.some((root) => issuer.verify(root.publicKey)),
          "chain verifies against the bundle",
        );
      });

      await t.step("the files change again after rotation", async () => {
        assert.ok(first);
        const rotated = await waitFor("a rotated SVID", async () => {
          const set = await readSvidSet(server.files);
          return set.leaf.serialNumber !== first!.leaf.serialNumber &&
              set.leaf.checkPrivateKey(set.key)
            ? set
            : undefined;
        }, { timeoutMs: 30_000, intervalMs: 250 });
        assert.ok(Date.parse(rotated.leaf.validTo) > Date.parse(first.leaf.validTo));
        assert.equal(rotated.leaf.subjectAltName?.includes("/workload/server"), true);
        assert.equal(first.leaf.checkPrivateKey(rotated.key), false, "a new key comes with it");
      });

      await t.step("a hint selects the other entry for another workload", async () => {
        const client = await runSpiffeHelper({
          agentSocketPath: spire.agentSocketPath,
          certDir: join(certRoot, "client"),
          hint: "client",
        });
        helpers.push(client);
        await client.waitForFiles();
        const set = await readSvidSet(client.files);
        assert.equal(set.leaf.subjectAltName, "URI:spiffe://example.org/workload/client");
      });
    } finally {
      for (const helper of helpers) await helper.stop();
      await Deno.remove(certRoot, { recursive: true });
      const dir = spire.dir;
      await spire.stop();
      await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
    }
  },
});
