/**
 * The local single-node cluster works as a cluster: the node is Ready, pods run, Services route
 * through kube-proxy (also from the host), pods reach the API through the `kubernetes` Service,
 * cluster DNS answers, `kubectl logs` and `kubectl exec` reach kubelet, and `stop()` leaves
 * nothing on the machine.
 */

import assert from "node:assert/strict";
import {
  CLUSTER_DNS_IP,
  HOST_IP,
  KUBELET_DIR,
  type LocalCluster,
  needsCluster,
  NODE_NAME,
  startCluster,
} from "./cluster.ts";
import {
  buildLocalImages,
  COREDNS_IMAGE,
  importImages,
  needsImageTools,
  PAUSE_IMAGE,
} from "./images.ts";
import { waitFor } from "./process.ts";

const requirement = {
  ignore: needsCluster().ignore || needsImageTools().ignore,
};

async function jsonpath(cluster: LocalCluster, args: string[], path: string): Promise<string> {
  const result = await cluster.kubectl(["get", ...args, "-o", `jsonpath=${path}`], { check: true });
  return result.stdout.trim();
}

async function leftovers(dir: string, netnsPath: string): Promise<string[]> {
  const found: string[] = [];
  const present = (path: string) => {
    try {
      Deno.lstatSync(path);
      return true;
    } catch {
      return false;
    }
  };
  for (const path of [KUBELET_DIR, dir, netnsPath]) if (present(path)) found.push(path);
  for (const controller of Deno.readDirSync("/sys/fs/cgroup")) {
    const path = `/sys/fs/cgroup/${controller.name}/kubepods`;
    if (present(path)) found.push(path);
  }
  const mounts = await Deno.readTextFile("/proc/self/mountinfo");
  for (const line of mounts.split("\n")) {
    const point = line.split(" ")[4] ?? "";
    if (point.startsWith(KUBELET_DIR) || point.startsWith(dir) || point === netnsPath) {
      found.push(`mount ${point}`);
    }
  }
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(dir)) {
        found.push(`process ${entry.name}: ${cmdline.replaceAll("\0", " ")}`);
      }
    } catch { /* exited */ }
  }
  return found;
}

Deno.test({
  name: "local cluster: node Ready, pods, Services from the host, DNS, logs, exec, clean stop",
  ...requirement,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const images = await buildLocalImages({ refs: [PAUSE_IMAGE, COREDNS_IMAGE] });
    const cluster = await startCluster({
      sandboxImage: PAUSE_IMAGE,
      dnsImage: COREDNS_IMAGE,
      prepareRuntime: (containerdAddress) => importImages(images, { containerdAddress }),
    });
    const { dir, netnsPath } = cluster;
    try {
      assert.deepStrictEqual(
        await jsonpath(
          cluster,
          ["node", NODE_NAME],
          `{.status.conditions[?(@.type=="Ready")].status}`,
        ),
        "True",
      );

      // A plain pod (the pause image) runs.
      await cluster.kubectl(["run", "sleeper", `--image=${PAUSE_IMAGE}`, "--restart=Never"], {
        check: true,
      });
      await waitFor(
        "pod sleeper Running",
        async () => await jsonpath(cluster, ["pod", "sleeper"], "{.status.phase}") === "Running",
        {
          timeoutMs: 60_000,
          intervalMs: 500,
        },
      );

      // The in-cluster `kubernetes` Service routes to this apiserver (CoreDNS, Ready above,
      // reads the API through it).
      const slice = await jsonpath(
        cluster,
        ["endpointslice", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes"],
        "{.items[0].endpoints[0].addresses[0]}",
      );
      assert.deepStrictEqual(slice, HOST_IP);

      // A Service reached from the host: kube-proxy's rules in the node translate it.
      await cluster.kubectl([
        "expose",
        "deployment",
        "coredns",
        "-n",
        "kube-system",
        "--name=coredns-health",
        "--port=80",
        "--target-port=8080",
      ], { check: true });
      const healthIp = await jsonpath(
        cluster,
        ["service", "coredns-health", "-n", "kube-system"],
        "{.spec.clusterIP}",
      );
      const body = await waitFor("CoreDNS /health through its Service", async () => {
        const response = await fetch(`http://${healthIp}/health`, {
          signal: AbortSignal.timeout(3_000),
        });
        const text = await response.text();
        return response.ok ? text : undefined;
      }, { timeoutMs: 30_000, intervalMs: 500 });
      assert.deepStrictEqual(body.trim(), "OK");

      // Cluster DNS answers for Services.
      const nameServer = { ipAddr: CLUSTER_DNS_IP, port: 53 };
      assert.deepStrictEqual(
        await Deno.resolveDns("kubernetes.default.svc.cluster.local", "A", { nameServer }),
        ["10.0.0.1"],
      );
      assert.deepStrictEqual(
        await Deno.resolveDns("coredns-health.kube-system.svc.cluster.local", "A", { nameServer }),
        [healthIp],
      );

      // apiserver -> kubelet: logs and exec.
      const logs = await cluster.kubectl(["logs", "-n", "kube-system", "deployment/coredns"], {
        check: true,
      });
      assert.ok(logs.stdout.includes("CoreDNS-1.15.0"), logs.stdout);
      const exec = await cluster.kubectl(
        ["exec", "-n", "kube-system", "deployment/coredns", "--", "/coredns", "-version"],
        { check: true },
      );
      assert.ok(exec.stdout.includes("CoreDNS-1.15.0"), exec.stdout);
    } finally {
      await cluster.stop();
    }
    assert.deepStrictEqual(await leftovers(dir, netnsPath), []);
    assert.ok(
      !(await Deno.readTextFile("/proc/net/dev")).includes("scc-"),
      "veth left on the host",
    );
  },
});
