/**
 * Production load through a real API server (tests/harness/admission_load.ts): the shipped
 * `webhook/main.ts` with the Deployment's args and env, in a memory cgroup capped at the
 * Deployment's `limits.memory`, registered with the shipped MutatingWebhookConfiguration
 * (failurePolicy Fail, its timeout and selectors; only the Service clientConfig becomes a URL,
 * as there is no Service without a cluster). Labelled and unlabelled pods are created at a
 * steady rate and in a burst while the SVID rotates every 2 s: not one create may fail, every
 * labelled pod must be stored mutated and every unlabelled one untouched, and the webhook must
 * stay alive and under its limit.
 */

import assert from "node:assert/strict";
import {
  type AdmissionLoad,
  createPodsAtRates,
  createPodsBurst,
  mutationProblem,
  type PodCreateResult,
  startAdmissionLoad,
} from "./harness/admission_load.ts";
import { DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { needsTools } from "./harness/mod.ts";
import { readWebhookContainer } from "./harness/webhook_manifest.ts";

const MiB = 1024 * 1024;

function failures(results: PodCreateResult[]): string[] {
  return results.filter((r) => r.problem !== undefined).map((r) =>
    `${r.name} (HTTP ${r.status}): ${r.problem}`
  );
}

Deno.test({
  name: "webhook under steady and burst pod creates with a rotating SVID: no failed admission",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const load: AdmissionLoad = await startAdmissionLoad({
      rotateEveryMs: 2_000,
      log: (m) => console.log(`[load] ${m}`),
    });
    let namespaceDeleted = false;
    try {
      const all: PodCreateResult[] = [];
      const updatesBefore = await load.svidUpdates();
      const rotationsBefore = load.rotations;

      await t.step("40 pods/s for 15 s (25 labelled, 15 unlabelled)", async () => {
        const results = await createPodsAtRates(load, {
          labelledPerSecond: 25,
          unlabelledPerSecond: 15,
          durationMs: 15_000,
        });
        all.push(...results);
        assert.equal(results.length, 600);
        assert.deepEqual(failures(results), []);
      });

      await t.step("a burst of 100 creates at once", async () => {
        const results = await createPodsBurst(load, 100);
        all.push(...results);
        assert.deepEqual(failures(results), []);
      });

      await t.step("the SVID rotated during the load and the webhook picked it up", async () => {
        assert.ok(load.rotations - rotationsBefore >= 5, `${load.rotations} rotations`);
        const updates = (await load.svidUpdates()) - updatesBefore;
        assert.ok(updates >= 3, `${updates} SVID updates served`);
      });

      await t.step(
        "every labelled pod is stored mutated, every unlabelled one unchanged",
        async () => {
          const stored = new Map((await load.listPods()).map((p) => [p.metadata!.name!, p]));
          const problems: string[] = [];
          for (const r of all) {
            const pod = stored.get(r.name);
            if (!pod) {
              problems.push(`${r.name} not stored`);
              continue;
            }
            assert.equal(pod.metadata?.labels?.[INJECT_LABEL] === "true", r.labelled, r.name);
            const problem = mutationProblem(pod, r.labelled, load.driverName, load.className);
            if (problem) problems.push(problem);
          }
          assert.deepEqual(problems, []);
          // The Deployment's flags name the API's driver.
          assert.equal(load.driverName, DRIVER_NAME);
          assert.ok(all.filter((r) => r.labelled).length >= 400);
          assert.ok(all.filter((r) => !r.labelled).length >= 250);
        },
      );

      await t.step("the webhook is alive and stayed under its memory limit", () => {
        assert.equal(load.webhook.exitCode, null, load.webhook.logTail());
        assert.deepEqual(load.cgroup.pids(), [load.webhook.pid]);
        const stats = load.cgroup.stats();
        // The limit is the manifest's, as kubelet would set it.
        assert.equal(stats.limitBytes, readWebhookContainer().memoryLimitBytes);
        console.log(
          `[load] webhook cgroup: peak ${(stats.peakBytes / MiB).toFixed(1)} MiB of ${
            (stats.limitBytes / MiB).toFixed(0)
          } MiB, failcnt ${stats.failcnt}, OOM kills ${stats.oomKills}`,
        );
        assert.ok(stats.peakBytes < stats.limitBytes, JSON.stringify(stats));
        assert.equal(stats.failcnt, 0);
        assert.equal(stats.memswFailcnt, 0);
        assert.equal(stats.oomKills, 0);
        assert.equal(stats.underOom, false);
      });

      await t.step("cleanup: the namespace and its pods are gone", async () => {
        await load.deleteNamespace();
        namespaceDeleted = true;
        const namespaces = await load.kube.kubectl(["get", "namespaces", "-o", "name"], {
          check: true,
        });
        assert.ok(!namespaces.stdout.includes(load.namespace), namespaces.stdout);
      });
    } finally {
      if (!namespaceDeleted) await load.deleteNamespace().catch(() => {});
      const cgroupPath = load.cgroup.path;
      await load.stop();
      assert.throws(() => Deno.statSync(cgroupPath), Deno.errors.NotFound, "cgroup left behind");
    }
  },
});
