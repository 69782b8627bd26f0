/**
 * The webhook program starting before it has an SVID, as it does in its pod now that no init
 * container fetches one first: the health port answers at once, `/readyz` fails and HTTPS stays
 * closed until spiffe-helper's files appear, and meanwhile the controller already applies the
 * ClusterSPIFFEIDs (including the webhook's own) once their CRD is served, with the webhook's
 * real RBAC.
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { connect } from "node:net";
import { join } from "node:path";
import {
  type CertificateFiles,
  createCa,
  type ManagedProcess,
  needsTools,
  servedSerial,
  startKubeApiServer,
  startWebhookProcess,
  waitFor,
  writeLocalhostSvid,
  writeServiceAccountKubeconfig,
} from "./harness/mod.ts";
import { setTimeout as delay } from "node:timers/promises";

const ROOT = new URL("..", import.meta.url).pathname;
const MANIFESTS = join(ROOT, "manifests");
const REGISTRATIONS = join(MANIFESTS, "spire/clusterspiffeids.yaml");

/** Whether anything accepts TCP connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port }, () => {
      socket.end();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url);
  return { status: response.status, text: await response.text() };
}

/** The program's JSON log lines so far. */
async function logLines(process: ManagedProcess): Promise<{ level: string; msg: string }[]> {
  const text = await Deno.readTextFile(process.logPath);
  return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

/** Writes an SVID set the way spiffe-helper does (cert, key, bundle) and returns its serial. */
async function writeSvid(dir: string, certDir: string, name: string, ca: CertificateFiles) {
  const leaf = await writeLocalhostSvid(ca, dir, certDir, name);
  return new X509Certificate(leaf.certPem).serialNumber;
}

function startWebhook(work: string, extra: string[]) {
  return startWebhookProcess({ logPath: join(work, "webhook.log"), args: extra });
}

/** Checks health, readiness and HTTPS before the SVID, then that HTTPS serves the SVID once written. */
async function checkServesOnlyWithSvid(
  webhook: ReturnType<typeof startWebhook>,
  work: string,
  certDir: string,
): Promise<void> {
  const { process, port, health } = webhook;
  await waitFor("health port", async () =>
    (await get(`${health}/healthz`).catch(() => undefined))
      ?.status === 200, { timeoutMs: 60_000, abort: () => process.assertRunning() });
  const notReady = await get(`${health}/readyz`);
  assert.equal(notReady.status, 503);
  assert.match(notReady.text, /not ready: no valid SVID in .*certs yet/);
  assert.equal(await listening(port), false, "HTTPS is closed without an SVID");
  await waitFor(
    "waiting log",
    async () => (await logLines(process)).some((l) => l.msg === `waiting for SVID in ${certDir}`),
  );

  await Deno.mkdir(certDir, { recursive: true });
  const ca = await createCa(work, "ca", "test-spire-ca");
  const serial = await writeSvid(work, certDir, "leaf-1", ca);
  await waitFor("ready", async () => (await get(`${health}/readyz`)).status === 200, {
    timeoutMs: 10_000,
    intervalMs: 50,
    abort: () => process.assertRunning(),
  });
  assert.equal(await servedSerial(port, ca.certPem), serial);
  // Live reload still works: the next set is served without a restart.
  const next = await writeSvid(work, certDir, "leaf-2", ca);
  await waitFor("next SVID served", async () => (await servedSerial(port, ca.certPem)) === next, {
    timeoutMs: 10_000,
    detail: () => process.logTail(20),
  });
  const lines = await logLines(process);
  assert.equal(lines.filter((l) => l.msg.startsWith("waiting for SVID")).length, 1);
  assert.ok(lines.some((l) => l.msg === "admission endpoint listening"));
}

Deno.test({
  name: "webhook startup: health at once, HTTPS only once the SVID appears (no cert dir at start)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const work = await Deno.makeTempDir({ prefix: "webhook-startup-" });
    const certDir = join(work, "certs");
    const webhook = startWebhook(work, ["--controller=false", `--cert-dir=${certDir}`]);
    try {
      await checkServesOnlyWithSvid(webhook, work, certDir);
    } finally {
      await webhook.process.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "webhook startup: a registrations file with another kind stops the program, naming it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const work = await Deno.makeTempDir({ prefix: "webhook-startup-" });
    await Deno.mkdir(join(work, "registrations"));
    await Deno.writeTextFile(
      join(work, "registrations", "ids.yaml"),
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n",
    );
    const command = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(ROOT, "webhook/main.ts"),
        `--registrations-dir=${join(work, "registrations")}`,
        "--kubeconfig=/nonexistent",
        "--port=0",
        "--health-port=0",
      ],
      stdout: "piped",
      stderr: "piped",
    });
    try {
      const out = await command.output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, stderr);
      assert.match(stderr, /cannot start: registrations unusable/);
      assert.match(
        stderr,
        /ids\.yaml, document 1, line 1, ConfigMap stray: .*not spire\.spiffe\.io/,
      );
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});

interface StoredId {
  metadata: {
    name: string;
    uid: string;
    labels?: Record<string, string>;
    managedFields?: { manager: string }[];
  };
  spec: { ttl?: string; spiffeIDTemplate?: string };
}

Deno.test({
  name:
    "webhook startup: the controller applies the ClusterSPIFFEIDs once their CRD exists, repairs them, and serves HTTPS once its SVID appears",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const kube = await startKubeApiServer();
    const work = await Deno.makeTempDir({ prefix: "webhook-registrations-" });
    let webhook: ReturnType<typeof startWebhook> | undefined;
    try {
      // The webhook's namespace, service account and RBAC as shipped; no CRD yet.
      await kube.kubectl(["apply", "-f", join(MANIFESTS, "namespaces.yaml")], { check: true });
      await kube.kubectl(["apply", "-f", join(MANIFESTS, "webhook/rbac.yaml")], { check: true });
      const kubeconfig = join(work, "webhook.kubeconfig");
      await writeServiceAccountKubeconfig(
        kube,
        { namespace: "spire-cacerts", name: "spire-cacerts-webhook" },
        kubeconfig,
        "1h",
      );
      const registrations = join(work, "registrations");
      await Deno.mkdir(registrations);
      await Deno.copyFile(REGISTRATIONS, join(registrations, "clusterspiffeids.yaml"));
      // A ClusterSPIFFEID the webhook did not create; it must stay as it is.
      const foreign = {
        apiVersion: "spire.spiffe.io/v1alpha1",
        kind: "ClusterSPIFFEID",
        metadata: { name: "someone-elses" },
        spec: { spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/other", ttl: "1h" },
      };

      const certDir = join(work, "certs");
      webhook = startWebhook(work, [
        `--cert-dir=${certDir}`,
        `--kubeconfig=${kubeconfig}`,
        `--registrations-dir=${registrations}`,
        "--registrations-resync=1s",
        "--log-level=debug",
      ]);
      const proc = webhook.process;
      const detail = () => proc.logTail(40);
      const list = async (): Promise<StoredId[]> => {
        const r = await kube.kubectl(
          ["get", "clusterspiffeids", "-o", "json", "--show-managed-fields"],
        );
        return r.code === 0 ? (JSON.parse(r.stdout) as { items: StoredId[] }).items : [];
      };
      const byName = async () =>
        Object.fromEntries((await list()).map((o) => [o.metadata.name, o]));

      await t.step("before the CRD: waits, logged once at info", async () => {
        await waitFor(
          "waiting for CRD",
          async () =>
            (await logLines(proc)).some((l) =>
              l.level === "info" &&
              l.msg.startsWith("waiting for CRD clusterspiffeids.spire.spiffe.io")
            ),
          { timeoutMs: 60_000, abort: () => proc.assertRunning(), detail },
        );
        await delay(3_000);
        const waits = (await logLines(proc)).filter((l) => l.msg.startsWith("waiting for CRD"));
        assert.equal(waits.length, 1);
      });

      await t.step(
        "the CRD appears: every ClusterSPIFFEID within seconds, as in the file",
        async () => {
          await kube.kubectl(["apply", "-k", join(MANIFESTS, "crds")], { check: true });
          await kube.kubectl(
            [
              "wait",
              "--for=condition=Established",
              "--timeout=60s",
              "crd/clusterspiffeids.spire.spiffe.io",
            ],
            { check: true },
          );
          const served = performance.now();
          const ids = await waitFor("ClusterSPIFFEIDs", async () => {
            const found = await byName();
            return Object.keys(found).length === 3 && found;
          }, { timeoutMs: 10_000, intervalMs: 100, detail });
          console.log(
            `ClusterSPIFFEIDs ${(performance.now() - served).toFixed(0)} ms after the CRD`,
          );
          assert.deepEqual(Object.keys(ids).sort(), [
            "spiffe-demo-client",
            "spiffe-demo-server",
            "spire-cacerts-webhook",
          ]);
          assert.equal(ids["spiffe-demo-server"].spec.ttl, "10s");
          assert.equal(ids["spire-cacerts-webhook"].spec.ttl, "60m");
          assert.match(ids["spiffe-demo-client"].spec.spiffeIDTemplate!, /\/workload\/client$/);
          for (const id of Object.values(ids)) {
            assert.equal(id.metadata.labels?.["app.kubernetes.io/managed-by"], "spire-cacerts");
            assert.deepEqual(id.metadata.managedFields?.map((f) => f.manager), [
              "spire-cacerts-webhook",
            ]);
          }
          await waitFor(
            "applied log",
            async () =>
              (await logLines(proc)).filter((l) => l.msg === "ClusterSPIFFEIDs applied").length ===
                1,
          );
          await kube.kubectl(["create", "-f", "-"], {
            stdin: JSON.stringify(foreign),
            check: true,
          });
        },
      );

      await t.step(
        "a deleted one comes back on the 1 s repair pass; an edit is undone",
        async () => {
          const before = (await byName())["spiffe-demo-server"].metadata.uid;
          await kube.kubectl(["delete", "clusterspiffeid", "spiffe-demo-server"], { check: true });
          const back = await waitFor("re-created", async () => {
            const found = (await byName())["spiffe-demo-server"];
            return found && found.metadata.uid !== before && found;
          }, { timeoutMs: 5_000, intervalMs: 100, detail });
          assert.equal(back.spec.ttl, "10s");

          await kube.kubectl([
            "patch",
            "clusterspiffeid",
            "spiffe-demo-client",
            "--type=merge",
            "-p",
            JSON.stringify({ spec: { ttl: "24h" } }),
          ], { check: true });
          await waitFor(
            "edit undone",
            async () => (await byName())["spiffe-demo-client"]?.spec.ttl === "60s",
            {
              timeoutMs: 5_000,
              intervalMs: 100,
              detail,
            },
          );
        },
      );

      await t.step(
        "a changed file is applied; a name without RBAC is reported with the fix",
        async () => {
          const text = (await Deno.readTextFile(REGISTRATIONS)).replace("ttl: 60s", "ttl: 90s");
          await Deno.writeTextFile(join(registrations, "clusterspiffeids.yaml"), text);
          await Deno.writeTextFile(
            join(registrations, "extra.yaml"),
            "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterSPIFFEID\nmetadata:\n" +
              "  name: not-granted\nspec:\n  spiffeIDTemplate: spiffe://{{ .TrustDomain }}/x\n",
          );
          await waitFor(
            "new ttl",
            async () => (await byName())["spiffe-demo-client"]?.spec.ttl === "90s",
            {
              timeoutMs: 5_000,
              intervalMs: 100,
              detail,
            },
          );
          const warning = await waitFor(
            "forbidden warning",
            async () =>
              (await logLines(proc)).find((l) =>
                l.level === "warn" && l.msg === "ClusterSPIFFEID not applied; retrying"
              ),
            { timeoutMs: 5_000, detail },
          ) as { error?: string };
          assert.match(
            warning.error ?? "",
            /not-granted: apply refused with 403 .*add not-granted to resourceNames .*ClusterRole spire-cacerts-webhook/,
          );
          assert.equal((await byName())["not-granted"], undefined);
          // The ClusterSPIFFEID nobody listed is untouched after several passes.
          const other = (await byName())["someone-elses"];
          assert.equal(other.spec.ttl, "1h");
          assert.equal(other.metadata.labels?.["app.kubernetes.io/managed-by"], undefined);
        },
      );

      await t.step("HTTPS: closed without an SVID, serving it once written", async () => {
        await checkServesOnlyWithSvid(webhook!, work, certDir);
      });
    } finally {
      await webhook?.process.stop();
      await kube.stop();
      await Deno.remove(work, { recursive: true });
    }
  },
});
