/**
 * A real single-node Kubernetes cluster for end-to-end tests: the harness's etcd + kube-apiserver,
 * kube-controller-manager and kube-scheduler on the host, and a node made of containerd (Debian),
 * kubelet and kube-proxy running in a dedicated network namespace joined to the host by a veth
 * pair. Pods get addresses from a CNI bridge (Debian's containernetworking-plugins); Services work
 * through kube-proxy's iptables rules, which live only in the node's network namespace; optional
 * CoreDNS serves `cluster.local`.
 *
 * Why a dedicated network namespace: kube-proxy and the CNI plugins rewrite iptables and create
 * bridges; inside their own namespace none of that touches the machine, and deleting the namespace
 * removes all of it. Processes enter it with `nsenter --net=...` only (never `ip netns exec`,
 * which would also give each process a private mount namespace and hide kubelet's mounts from
 * containerd and from the CSI driver).
 *
 * Every component authenticates as the harness's `system:masters` client certificate (a test
 * cluster: no node authorizer or bootstrap tokens); kube-apiserver reaches kubelet with its own
 * client certificate, so `kubectl logs` and `exec` work.
 *
 * Host paths used: `/var/lib/kubelet` (the manifests' CSI paths assume it), cgroups under
 * `kubepods`, `/run/netns/<name>`, plus any `hostPaths` a caller names. Everything is removed by
 * `stop()`; a file lock serialises clusters on one machine and a record of owned paths lets the
 * next run clean up after a crashed one.
 *
 * @module
 */

import { dirname, join } from "node:path";
import {
  type KubeApiServer,
  SERVICE_CLUSTER_IP_RANGE,
  startKubeApiServer,
} from "./kube_apiserver.ts";
import {
  type CommandResult,
  type ManagedProcess,
  runCommand,
  startProcess,
  waitFor,
} from "./process.ts";
import { isCi, needsTools, type ToolName, toolPath, type ToolRequirement } from "./tools.ts";
import { setTimeout as delay } from "node:timers/promises";

/** Go tools (built by tests/tools/build.sh) a local cluster runs. */
export const CLUSTER_TOOLS: readonly ToolName[] = [
  "etcd",
  "kube-apiserver",
  "kubectl",
  "kubelet",
  "kube-controller-manager",
  "kube-scheduler",
  "kube-proxy",
];

/** Host programs (Debian packages containerd, runc, containernetworking-plugins, iptables). */
export const CLUSTER_HOST_PROGRAMS: readonly string[] = [
  "/usr/bin/containerd",
  "/usr/bin/ctr",
  "/usr/bin/containerd-shim-runc-v2",
  "/usr/sbin/runc",
  "/usr/lib/cni/bridge",
  "/usr/lib/cni/host-local",
  "/usr/lib/cni/loopback",
  "/usr/lib/cni/portmap",
  "/usr/sbin/iptables",
  "/usr/sbin/ip",
  "/usr/bin/nsenter",
];

/** The kubelet root directory; the manifests' CSI socket and registration paths assume it. */
export const KUBELET_DIR = "/var/lib/kubelet";
/** Cluster IP of the DNS Service (`kube-dns` in kube-system) when DNS is installed. */
export const CLUSTER_DNS_IP = "10.0.0.10";
/** Pod addresses (the CNI bridge's host-local range). */
export const POD_CIDR = "10.244.0.0/24";
/** The host end of the veth pair; kube-apiserver listens here so pods can reach it. */
export const HOST_IP = "10.200.0.1";
/** The node's address (the namespace end of the veth pair); kubelet serves on it. */
export const NODE_IP = "10.200.0.2";
/** The node's name. */
export const NODE_NAME = "spire-cacerts-node";

const LOCK_DIR = "/run/spire-cacerts-cluster";
const OWNED_RECORD = join(LOCK_DIR, "owned.json");
const CGROUP_ROOT = "/sys/fs/cgroup";

/** Thrown when the machine lacks something a local cluster needs (program, root, free paths). */
export class ClusterHostError extends Error {
  /**
   * Creates the error.
   *
   * @param message what is missing and how to get it
   */
  constructor(message: string) {
    super(message);
    this.name = "ClusterHostError";
  }
}

/** Thrown when tearing the cluster down left something behind. */
export class ClusterCleanupError extends Error {
  /** The individual failures. */
  readonly failures: readonly string[];

  /**
   * Creates the error.
   *
   * @param failures one line per step that failed
   */
  constructor(failures: readonly string[]) {
    super(`local cluster cleanup failed:\n${failures.join("\n")}`);
    this.name = "ClusterCleanupError";
    this.failures = failures;
  }
}

/** Options for {@link startCluster}. */
export interface ClusterOptions {
  /** Image containerd runs as every pod's sandbox (the pause image); must be present locally. */
  sandboxImage: string;
  /**
   * Called once containerd runs and before kubelet starts, with containerd's socket path: the
   * place to import images (`ctr -n k8s.io images import`), since no registry is reachable.
   */
  prepareRuntime?: (containerdAddress: string) => Promise<void>;
  /** Install CoreDNS (Deployment + Service `kube-dns` at {@link CLUSTER_DNS_IP}) with this image. */
  dnsImage?: string;
  /**
   * Host directories the workloads create (hostPath volumes). They must not exist yet; `stop()`
   * unmounts anything under them and removes them.
   */
  hostPaths?: string[];
  /** Progress messages (default: none). */
  log?: (message: string) => void;
  /** How long to wait for the node to become Ready (default 180 s). */
  readyTimeoutMs?: number;
}

/** A running single-node cluster. */
export interface LocalCluster {
  /** The control plane (url, kubeconfig, PKI, kubectl). */
  kube: KubeApiServer;
  /** Runs kubectl against the cluster. */
  kubectl(args: string[], options?: { stdin?: string; check?: boolean }): Promise<CommandResult>;
  /** containerd's gRPC socket. */
  containerdAddress: string;
  /** Path of the node's network namespace (`/run/netns/<name>`). */
  netnsPath: string;
  /** Temporary directory with configuration, state and logs of every component. */
  dir: string;
  /** Log file of each component, by name. */
  logs: Record<string, string>;
  /** Runs a command inside the node's network namespace (host mount namespace). */
  execInNode(command: string[], options?: { check?: boolean }): Promise<CommandResult>;
  /** Stops every component and removes every trace from the machine. */
  stop(): Promise<void>;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Host programs (of {@link CLUSTER_HOST_PROGRAMS}) that are missing. */
export function missingHostPrograms(): string[] {
  return CLUSTER_HOST_PROGRAMS.filter((path) => !exists(path));
}

/**
 * Declares that a test runs a local cluster. Outside CI it is ignored when a Go tool or host
 * program is missing or the test does not run as root; in CI it always runs (and
 * {@link startCluster} then fails naming what is missing).
 *
 * @param extraTools further Go tools the test needs
 */
export function needsCluster(extraTools: readonly ToolName[] = []): ToolRequirement {
  if (isCi()) return { ignore: false };
  const tools = needsTools([...CLUSTER_TOOLS, ...extraTools]);
  return { ignore: tools.ignore || missingHostPrograms().length > 0 || Deno.uid() !== 0 };
}

function kubeconfig(url: string, caPath: string, certPath: string, keyPath: string): string {
  // JSON is valid YAML for every Kubernetes component.
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "local", cluster: { server: url, "certificate-authority": caPath } }],
    users: [{ name: "admin", user: { "client-certificate": certPath, "client-key": keyPath } }],
    contexts: [{ name: "local", context: { cluster: "local", user: "admin" } }],
    "current-context": "local",
  });
}

/** Mount points at or under any of `prefixes`, deepest first. */
async function mountsUnder(prefixes: readonly string[]): Promise<string[]> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  const points = new Set<string>();
  for (const line of text.split("\n")) {
    const field = line.split(" ")[4];
    if (!field) continue;
    // mountinfo escapes spaces and other characters as octal.
    const point = field.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
    if (prefixes.some((p) => point === p || point.startsWith(p.endsWith("/") ? p : `${p}/`))) {
      points.add(point);
    }
  }
  return [...points].sort((a, b) => b.split("/").length - a.split("/").length);
}

async function unmountAll(prefixes: readonly string[]): Promise<string[]> {
  const failures: string[] = [];
  // Several passes: a bind mount may be stacked several times on one point.
  for (let pass = 0; pass < 5; pass++) {
    const points = await mountsUnder(prefixes);
    if (points.length === 0) return failures;
    for (const point of points) {
      const result = await runCommand(["umount", point]);
      if (result.code !== 0) await runCommand(["umount", "-l", point]);
    }
  }
  const left = await mountsUnder(prefixes);
  if (left.length > 0) failures.push(`mounts left: ${left.join(", ")}`);
  return failures;
}

/** Removes a cgroup directory tree bottom-up (cgroupfs only allows rmdir of empty groups). */
async function removeCgroupTree(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch {
    return;
  }
  if (!info.isDirectory) return;
  for await (const entry of Deno.readDir(path)) {
    if (entry.isDirectory) await removeCgroupTree(join(path, entry.name));
  }
  await Deno.remove(path);
}

/** Kills every process in kubelet's `kubepods` cgroups (containers a lost shim left running). */
async function killKubepodsProcesses(): Promise<void> {
  const walk = async (path: string): Promise<void> => {
    try {
      const procs = await Deno.readTextFile(join(path, "cgroup.procs"));
      for (const pid of procs.split("\n").filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone */ }
      }
      for await (const entry of Deno.readDir(path)) {
        if (entry.isDirectory) await walk(join(path, entry.name));
      }
    } catch { /* no such group */ }
  };
  await walk(join(CGROUP_ROOT, "pids", "kubepods"));
}

async function removeKubepodsCgroups(): Promise<string[]> {
  await killKubepodsProcesses();
  // Killed processes leave their cgroups a moment later.
  await delay(500);
  const failures: string[] = [];
  for await (const controller of Deno.readDir(CGROUP_ROOT)) {
    if (!controller.isDirectory) continue;
    const path = join(CGROUP_ROOT, controller.name, "kubepods");
    try {
      await removeCgroupTree(path);
    } catch (error) {
      failures.push(`cgroup ${path}: ${error instanceof Error ? error.message : error}`);
    }
  }
  return failures;
}

/** Processes whose command line mentions `needle` (our temp dir), e.g. leftover shims. */
async function pidsMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(needle)) pids.push(Number(entry.name));
    } catch { /* exited */ }
  }
  return pids.filter((pid) => pid !== Deno.pid);
}

interface OwnedRecord {
  paths: string[];
  netns: string[];
  links: string[];
}

async function readOwned(): Promise<OwnedRecord | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(OWNED_RECORD)) as OwnedRecord;
  } catch {
    return undefined;
  }
}

/** Removes what a crashed earlier run recorded as its own. */
async function cleanLeftovers(log: (message: string) => void): Promise<void> {
  const owned = await readOwned();
  if (!owned) return;
  log(`cleaning leftovers of an earlier run: ${JSON.stringify(owned)}`);
  for (const path of owned.paths.filter((p) => p.startsWith("/tmp/"))) {
    for (const pid of await pidsMentioning(path)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
  await unmountAll(owned.paths);
  for (const path of owned.paths) await Deno.remove(path, { recursive: true }).catch(() => {});
  for (const name of owned.netns) await runCommand(["ip", "netns", "delete", name]);
  for (const link of owned.links) await runCommand(["ip", "link", "delete", link]);
  await removeKubepodsCgroups();
  await Deno.remove(OWNED_RECORD);
}

const COREDNS_MANIFEST = (image: string) => `
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
# Cluster names and the node's name only: no upstream resolver is reachable from this node.
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        # The node's name, as a real cluster's upstream resolver would answer it (SPIRE's k8s
        # workload attestor dials kubelet by node name).
        hosts {
            ${NODE_IP} ${NODE_NAME}
            fallthrough
        }
        cache 5
        loop
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
        - name: coredns
          image: ${image}
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
          readinessProbe:
            httpGet: {path: /ready, port: 8181}
            periodSeconds: 2
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
            readOnlyRootFilesystem: true
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes:
        - name: config
          configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: ${CLUSTER_DNS_IP}
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
`;

/**
 * Starts a single-node cluster and waits until the node is Ready (and CoreDNS, when asked for).
 * Must run as root. Only one runs per machine at a time (others wait on a file lock).
 *
 * @throws {ClusterHostError} when a host program is missing or a host path is already in use
 * @throws {ToolMissingError} when a Go tool is not built
 */
export async function startCluster(options: ClusterOptions): Promise<LocalCluster> {
  const log = options.log ?? (() => {});
  const missing = missingHostPrograms();
  if (missing.length > 0) {
    throw new ClusterHostError(
      `a local cluster needs ${missing.join(", ")}: apt-get install containerd runc ` +
        `containernetworking-plugins iptables conntrack`,
    );
  }
  if (Deno.uid() !== 0) throw new ClusterHostError("a local cluster must run as root");
  const bins = {
    kubelet: toolPath("kubelet"),
    controllerManager: toolPath("kube-controller-manager"),
    scheduler: toolPath("kube-scheduler"),
    proxy: toolPath("kube-proxy"),
  };

  await Deno.mkdir(LOCK_DIR, { recursive: true });
  const lock = await Deno.open(join(LOCK_DIR, "lock"), { create: true, write: true });
  log("waiting for the cluster lock");
  await lock.lock(true);

  const suffix = crypto.randomUUID().slice(0, 6);
  const netnsName = `scc-node-${suffix}`;
  const netnsPath = `/run/netns/${netnsName}`;
  const hostLink = `scc-${suffix}`;
  const hostPaths = [KUBELET_DIR, ...(options.hostPaths ?? [])];
  let dir = "";
  const processes: ManagedProcess[] = [];
  const logs: Record<string, string> = {};
  let kube: KubeApiServer | undefined;
  let containerdAddress = "";

  const nsenter = (program: string, args: string[]) => ({
    program: "nsenter",
    args: [`--net=${netnsPath}`, "--", program, ...args],
  });
  const start = (name: string, program: string, args: string[], inNode: boolean) => {
    const logPath = join(dir, "logs", `${name}.log`);
    logs[name] = logPath;
    const command = inNode ? nsenter(program, args) : { program, args };
    const proc = startProcess({ name, logPath, ...command });
    processes.push(proc);
    return proc;
  };
  const ctr = (args: string[]) =>
    runCommand(["ctr", `--address=${containerdAddress}`, "--namespace=k8s.io", ...args]);

  const stop = async () => {
    const failures: string[] = [];
    const step = async (what: string, fn: () => Promise<string[] | void>) => {
      try {
        const more = await fn();
        if (more) failures.push(...more.map((m) => `${what}: ${m}`));
      } catch (error) {
        failures.push(`${what}: ${error instanceof Error ? error.message : error}`);
      }
    };
    const byName = (name: string) => processes.find((p) => p.name === name);
    // Controllers first, so nothing recreates the pods deleted next.
    for (const name of ["kube-controller-manager", "kube-scheduler"]) {
      await step(`stop ${name}`, async () => await byName(name)?.stop());
    }
    const kubelet = byName("kubelet");
    if (kube && kubelet && kubelet.exitCode === null) {
      // Through kubelet, so CRI tears down sandboxes, their network namespaces and CSI volumes.
      await step("delete pods", async () => {
        await kube!.kubectl([
          "delete",
          "pods",
          "--all",
          "--all-namespaces",
          "--grace-period=0",
          "--force",
          "--wait=false",
        ]);
        await waitFor("containerd to have no tasks", async () => {
          const tasks = await ctr(["tasks", "ls", "-q"]);
          return tasks.code === 0 && tasks.stdout.trim() === "";
        }, { timeoutMs: 60_000, intervalMs: 1_000 }).catch(() => {});
      });
    }
    for (const name of ["kube-proxy", "kubelet"]) {
      await step(`stop ${name}`, async () => await byName(name)?.stop());
    }
    if (containerdAddress && byName("containerd")?.exitCode === null) {
      await step("kill remaining containers", async () => {
        const tasks = await ctr(["tasks", "ls", "-q"]);
        for (const id of tasks.stdout.split("\n").filter(Boolean)) {
          await ctr(["tasks", "kill", "--all", "--signal=SIGKILL", id]);
          await waitFor(`task ${id} to stop`, async () => {
            const del = await ctr(["tasks", "delete", id]);
            return del.code === 0;
          }, { timeoutMs: 10_000, intervalMs: 300 }).catch(() => {});
        }
        const containers = await ctr(["containers", "ls", "-q"]);
        for (const id of containers.stdout.split("\n").filter(Boolean)) {
          await ctr(["containers", "delete", id]);
        }
      });
    }
    await step("stop containerd", async () => await byName("containerd")?.stop());
    if (dir) {
      await step("kill leftover shims", async () => {
        for (const pid of await pidsMentioning(dir)) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* gone */ }
        }
      });
    }
    await step("unmount", () => unmountAll([...hostPaths, ...(dir ? [dir] : [])]));
    await step("remove host paths", async () => {
      for (const path of hostPaths) await Deno.remove(path, { recursive: true }).catch(() => {});
    });
    await step("cgroups", () => removeKubepodsCgroups());
    await step("network", async () => {
      await runCommand(["ip", "netns", "delete", netnsName]);
      await runCommand(["ip", "link", "delete", hostLink]);
      const left: string[] = [];
      if (exists(netnsPath)) left.push(`${netnsPath} left`);
      // `ip netns add` turns /run/netns into a (shared) mount of itself; undo that once empty.
      if (exists("/run/netns") && [...Deno.readDirSync("/run/netns")].length === 0) {
        await runCommand(["umount", "/run/netns"]);
        await Deno.remove("/run/netns").catch(() => {});
      }
      if (exists(`/sys/class/net/${hostLink}`)) left.push(`link ${hostLink} left`);
      return left;
    });
    for (const proc of [...processes].reverse()) {
      await step(`stop ${proc.name}`, () => proc.stop());
    }
    await step("stop control plane", async () => await kube?.stop());
    if (dir) await step("remove dir", () => Deno.remove(dir, { recursive: true }));
    await step("owned record", () => Deno.remove(OWNED_RECORD));
    lock.close();
    if (failures.length > 0) throw new ClusterCleanupError(failures);
  };

  try {
    await cleanLeftovers(log);
    for (const path of hostPaths) {
      if (exists(path)) {
        throw new ClusterHostError(
          `${path} already exists: another kubelet or workload may own it; refusing to use it`,
        );
      }
    }
    const record: OwnedRecord = { paths: [...hostPaths], netns: [netnsName], links: [hostLink] };
    await Deno.writeTextFile(OWNED_RECORD, JSON.stringify(record));

    dir = await Deno.makeTempDir({ prefix: "spire-cacerts-cluster-" });
    await Deno.mkdir(join(dir, "logs"));
    record.paths.push(dir);
    await Deno.writeTextFile(OWNED_RECORD, JSON.stringify(record));

    // The node's network: a namespace joined to the host by a veth pair.
    log(`network namespace ${netnsName}`);
    const ip = (args: string[]) => runCommand(["ip", ...args], { check: true });
    const inNode = (args: string[]) =>
      runCommand(["nsenter", `--net=${netnsPath}`, "--", ...args], { check: true });
    await ip(["netns", "add", netnsName]);
    await ip(["link", "add", hostLink, "type", "veth", "peer", "name", `${hostLink}n`]);
    await ip(["link", "set", `${hostLink}n`, "netns", netnsName]);
    await ip(["addr", "add", `${HOST_IP}/24`, "dev", hostLink]);
    await ip(["link", "set", hostLink, "up"]);
    await inNode(["ip", "link", "set", "lo", "up"]);
    await inNode(["ip", "link", "set", `${hostLink}n`, "name", "eth0"]);
    await inNode(["ip", "addr", "add", `${NODE_IP}/24`, "dev", "eth0"]);
    await inNode(["ip", "link", "set", "eth0", "up"]);
    await inNode(["ip", "route", "add", "default", "via", HOST_IP]);
    // Per-namespace settings: forwarding between the bridge and eth0, and bridged traffic through
    // iptables so that pod-to-Service-to-pod on the same bridge is translated.
    await inNode(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    await inNode(["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"]);
    // The host reaches Services and pods through the node (kube-apiserver calls webhooks there).
    await ip(["route", "add", SERVICE_CLUSTER_IP_RANGE, "via", NODE_IP]);
    await ip(["route", "add", POD_CIDR, "via", NODE_IP]);

    log("control plane");
    kube = await startKubeApiServer({
      bindAddress: HOST_IP,
      serviceAccountAdmission: true,
      kubeletClientCertificate: true,
      // The node's name does not resolve on the host; dial kubelet (logs, exec) by address.
      extraArgs: ["--kubelet-preferred-address-types=InternalIP"],
    });
    record.paths.push(kube.dir);
    await Deno.writeTextFile(OWNED_RECORD, JSON.stringify(record));
    const pki = kube.pki;
    const kubeconfigPath = join(dir, "admin.kubeconfig");
    await Deno.writeTextFile(
      kubeconfigPath,
      kubeconfig(kube.url, pki.caCertPath, pki.adminCertPath, pki.adminKeyPath),
    );
    // Both control-plane controllers: the admin credentials for everything, one instance (no
    // leader election), and no serving port of their own.
    const controllerArgs = [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      "--leader-elect=false",
      "--bind-address=127.0.0.1",
      "--secure-port=0",
    ];
    start("kube-controller-manager", bins.controllerManager, [
      ...controllerArgs,
      `--service-account-private-key-file=${pki.serviceAccountKeyPath}`,
      `--root-ca-file=${pki.caCertPath}`,
      "--use-service-account-credentials=true",
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      "--controllers=*",
      "--v=1",
    ], false);
    start("kube-scheduler", bins.scheduler, [...controllerArgs, "--v=1"], false);

    log("containerd");
    const cdir = join(dir, "containerd");
    const cniConfDir = join(dir, "cni", "net.d");
    await Deno.mkdir(cniConfDir, { recursive: true });
    containerdAddress = join(cdir, "containerd.sock");
    await Deno.writeTextFile(
      join(cniConfDir, "10-bridge.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "spire-cacerts",
        plugins: [
          {
            type: "bridge",
            bridge: "cni0",
            isGateway: true,
            ipMasq: true,
            hairpinMode: true,
            ipam: {
              type: "host-local",
              ranges: [[{ subnet: POD_CIDR }]],
              routes: [{ dst: "0.0.0.0/0" }],
              dataDir: join(dir, "cni", "ipam"),
            },
          },
          { type: "portmap", capabilities: { portMappings: true } },
        ],
      }),
    );
    const snapshotter = await overlaySupported(dir) ? "overlayfs" : "native";
    const cri = `plugins."io.containerd.grpc.v1.cri"`;
    await Deno.mkdir(cdir, { recursive: true });
    await Deno.writeTextFile(
      join(cdir, "config.toml"),
      [
        "version = 2",
        `root = "${join(cdir, "root")}"`,
        `state = "${join(cdir, "state")}"`,
        `disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]`,
        "[grpc]",
        `  address = "${containerdAddress}"`,
        "[ttrpc]",
        `  address = "${containerdAddress}.ttrpc"`,
        `[plugins."io.containerd.internal.v1.opt"]`,
        `  path = "${join(cdir, "opt")}"`,
        `[${cri}]`,
        `  sandbox_image = "${options.sandboxImage}"`,
        `  stream_server_address = "127.0.0.1"`,
        // Pod network namespaces under our state directory instead of /run/netns, so a crashed
        // run's leftovers are found (and unmounted) with everything else.
        "  netns_mounts_under_state_dir = true",
        // This machine withholds CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj (-998 for
        // sandboxes): "write /proc/self/oom_score_adj: permission denied". Clamp instead.
        "  restrict_oom_score_adj = true",
        `[${cri}.containerd]`,
        `  snapshotter = "${snapshotter}"`,
        `  default_runtime_name = "runc"`,
        `[${cri}.containerd.runtimes.runc]`,
        `  runtime_type = "io.containerd.runc.v2"`,
        `[${cri}.containerd.runtimes.runc.options]`,
        "  SystemdCgroup = false",
        `[${cri}.cni]`,
        `  bin_dir = "/usr/lib/cni"`,
        `  conf_dir = "${cniConfDir}"`,
        "",
      ].join("\n"),
    );
    const containerd = start("containerd", "/usr/bin/containerd", [
      `--config=${join(cdir, "config.toml")}`,
    ], true);
    await waitFor("containerd socket", async () => {
      const version = await runCommand(["ctr", `--address=${containerdAddress}`, "version"]);
      return version.code === 0;
    }, { timeoutMs: 30_000, abort: () => containerd.assertRunning() });
    if (options.prepareRuntime) {
      log("importing images");
      await options.prepareRuntime(containerdAddress);
    }

    log("kubelet");
    const kdir = join(dir, "kubelet");
    await Deno.mkdir(kdir);
    await Deno.writeTextFile(join(kdir, "resolv.conf"), "nameserver 127.0.0.1\n");
    await Deno.writeTextFile(
      join(kdir, "config.yaml"),
      JSON.stringify({
        apiVersion: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        // This machine's cgroups are v1 (hybrid); kubelet 1.35+ refuses v1 unless told.
        failCgroupV1: false,
        cgroupDriver: "cgroupfs",
        failSwapOn: false,
        containerRuntimeEndpoint: `unix://${containerdAddress}`,
        // All of the node's addresses (its own namespace): kube-apiserver dials NODE_IP, SPIRE's
        // k8s workload attestor (host network) dials 127.0.0.1.
        address: "0.0.0.0",
        port: 10250,
        readOnlyPort: 0,
        healthzBindAddress: "127.0.0.1",
        healthzPort: 10248,
        authentication: {
          anonymous: { enabled: false },
          webhook: { enabled: true },
          x509: { clientCAFile: pki.caCertPath },
        },
        authorization: { mode: "Webhook" },
        clusterDNS: [CLUSTER_DNS_IP],
        clusterDomain: "cluster.local",
        // Only cluster names resolve here; the host's resolver is not reachable from the node.
        resolvConf: join(kdir, "resolv.conf"),
        // A test node: never evict for disk or image pressure from the shared machine's disk.
        evictionHard: {
          "memory.available": "1Mi",
          "nodefs.available": "0%",
          "nodefs.inodesFree": "0%",
          "imagefs.available": "0%",
        },
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        serializeImagePulls: false,
        registerNode: true,
        rotateCertificates: false,
        podPidsLimit: -1,
        maxPods: 60,
        syncFrequency: "20s",
        nodeStatusUpdateFrequency: "5s",
      }),
    );
    start("kubelet", bins.kubelet, [
      `--config=${join(kdir, "config.yaml")}`,
      `--kubeconfig=${kubeconfigPath}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
      `--root-dir=${KUBELET_DIR}`,
      `--cert-dir=${join(kdir, "pki")}`,
      "--v=2",
    ], true);

    log("kube-proxy");
    await Deno.writeTextFile(
      join(dir, "kube-proxy.yaml"),
      JSON.stringify({
        apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
        kind: "KubeProxyConfiguration",
        clientConnection: { kubeconfig: kubeconfigPath },
        mode: "iptables",
        clusterCIDR: POD_CIDR,
        hostnameOverride: NODE_NAME,
        healthzBindAddress: "127.0.0.1:10256",
        metricsBindAddress: "127.0.0.1:10249",
        // Leave global conntrack sysctls of the machine alone.
        conntrack: {
          maxPerCore: 0,
          min: 0,
          tcpEstablishedTimeout: "0s",
          tcpCloseWaitTimeout: "0s",
        },
        iptables: { localhostNodePorts: false },
      }),
    );
    start("kube-proxy", bins.proxy, [`--config=${join(dir, "kube-proxy.yaml")}`, "--v=1"], true);

    const abort = () => {
      for (const proc of processes) proc.assertRunning();
    };
    const nodeLog = () => processes.map((p) => `--- ${p.name}:\n${p.logTail(8)}`).join("\n");
    await waitFor(`node ${NODE_NAME} Ready`, async () => {
      const result = await kube!.kubectl([
        "get",
        "node",
        NODE_NAME,
        "-o",
        `jsonpath={.status.conditions[?(@.type=="Ready")].status}`,
      ]);
      return result.stdout.trim() === "True";
    }, { timeoutMs: options.readyTimeoutMs ?? 180_000, intervalMs: 1_000, abort, detail: nodeLog });
    await waitFor("ServiceAccount default/default", async () => {
      const result = await kube!.kubectl(["get", "serviceaccount", "default", "-n", "default"]);
      return result.code === 0;
    }, { timeoutMs: 60_000, intervalMs: 500, abort, detail: nodeLog });

    if (options.dnsImage) {
      log("CoreDNS");
      await kube.kubectl(["apply", "-f", "-"], {
        stdin: COREDNS_MANIFEST(options.dnsImage),
        check: true,
      });
      await waitFor("CoreDNS ready", async () => {
        const result = await kube!.kubectl([
          "get",
          "deployment",
          "coredns",
          "-n",
          "kube-system",
          "-o",
          "jsonpath={.status.readyReplicas}",
        ]);
        return result.stdout.trim() === "1";
      }, { timeoutMs: 120_000, intervalMs: 1_000, abort, detail: nodeLog });
    }

    const control = kube;
    return {
      kube: control,
      kubectl: (args, kubectlOptions) => control.kubectl(args, kubectlOptions),
      containerdAddress,
      netnsPath,
      dir,
      logs,
      execInNode: (command, execOptions = {}) =>
        runCommand(["nsenter", `--net=${netnsPath}`, "--", ...command], execOptions),
      stop,
    };
  } catch (error) {
    try {
      await stop();
    } catch (cleanupError) {
      console.error(cleanupError);
    }
    throw error;
  }
}

/** Whether overlayfs mounts work on the filesystem of `dir` (containerd's default snapshotter). */
async function overlaySupported(dir: string): Promise<boolean> {
  const base = join(dir, "overlay-probe");
  const [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map((d) =>
    join(base, d)
  );
  for (const d of [lower, upper, work, merged]) await Deno.mkdir(d, { recursive: true });
  const result = await runCommand([
    "mount",
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    merged,
  ]);
  if (result.code === 0) await runCommand(["umount", merged]);
  await Deno.remove(dirname(merged), { recursive: true });
  return result.code === 0;
}
