/**
 * A real etcd + kube-apiserver on loopback, configured the way envtest does it, with an admin
 * token user, an admin client certificate and a kubeconfig for kubectl and
 * `@kubernetes/client-node`.
 *
 * @module
 */

import { request } from "node:https";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient, loadKubeConfigFile } from "../../kube/mod.ts";
import { createCa, generateKeyPair, issueCertificate } from "./pki.ts";
import {
  type CommandResult,
  freePorts,
  type ManagedProcess,
  runCommand,
  startProcess,
  waitFor,
} from "./process.ts";
import { toolPath } from "./tools.ts";

/** Options for {@link startKubeApiServer}. */
export interface KubeApiServerOptions {
  /** How long to wait for `/readyz` (default 120 s). */
  readyTimeoutMs?: number;
  /** Extra kube-apiserver flags (`--name=value`), appended last. */
  extraArgs?: string[];
  /**
   * Address kube-apiserver listens on and `url` names (default `127.0.0.1`). A non-loopback
   * address (e.g. the host end of a veth pair) lets pods of a local node reach it.
   */
  bindAddress?: string;
  /**
   * Address published in the `kubernetes` Service's endpoints (default: `bindAddress`). When it
   * is not a loopback address the default (lease) endpoint reconciler runs, so the in-cluster
   * `kubernetes` Service routes to this server; with loopback, reconciliation stays off.
   */
  advertiseAddress?: string;
  /**
   * Enable the ServiceAccount admission plugin (default false: it is disabled because without
   * kube-controller-manager no default ServiceAccounts exist). A full cluster needs it so that
   * pods get their projected API token.
   */
  serviceAccountAdmission?: boolean;
  /**
   * Issue a client certificate (`system:masters`) kube-apiserver presents to kubelets, for
   * `kubectl logs`/`exec` (default false).
   */
  kubeletClientCertificate?: boolean;
}

/** Files of the control plane's PKI, for the components of a local node. */
export interface KubeApiServerPki {
  /** The cluster CA certificate (signs the serving and client certificates). */
  caCertPath: string;
  /** The cluster CA private key. */
  caKeyPath: string;
  /** Private key that signs ServiceAccount tokens (for kube-controller-manager). */
  serviceAccountKeyPath: string;
  /** Public key that verifies ServiceAccount tokens. */
  serviceAccountPublicKeyPath: string;
  /** A `system:masters` client certificate. */
  adminCertPath: string;
  /** Its key. */
  adminKeyPath: string;
}

/** The Service IP range kube-apiserver allocates from; its first address is `kubernetes`. */
export const SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24";

/** Options for {@link KubeApiServer.kubectl}. */
export interface KubectlOptions {
  /** Text for kubectl's standard input (e.g. a manifest for `apply -f -`). */
  stdin?: string;
  /** Throw `CommandFailedError` on a non-zero exit (default false). */
  check?: boolean;
}

/** A running etcd + kube-apiserver. */
export interface KubeApiServer {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  /** PEM of the CA that signed the serving certificate (and the admin client certificate). */
  caPem: string;
  /** Bearer token of a `system:masters` user. */
  token: string;
  /** Path of a kubeconfig: context `admin` (token, current) and `admin-cert` (client cert). */
  kubeconfigPath: string;
  /** The kubeconfig loaded into `@kubernetes/client-node`. */
  kubeConfig: KubeConfig;
  /** The kubeconfig loaded into the product's own client (kube/), as the admin token user. */
  client: KubeClient;
  /** Temporary directory holding certificates, data and logs; removed by `stop()`. */
  dir: string;
  /** Paths of the CA, ServiceAccount key pair and admin certificate. */
  pki: KubeApiServerPki;
  /** Runs kubectl against this server. */
  kubectl(args: string[], options?: KubectlOptions): Promise<CommandResult>;
  /** Restarts kube-apiserver only (same etcd, port and certificates) and waits until ready. */
  restart(): Promise<void>;
  /** Stops both processes and removes the temporary directory. */
  stop(): Promise<void>;
}

const ADMIN_TOKEN_USER = "admin";

function httpsGet(url: string, caPem: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      ca: caPem,
      headers: { authorization: `Bearer ${token}` },
      timeout: 5_000,
    }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

function kubeconfigYaml(
  url: string,
  caPem: string,
  token: string,
  cert: { certPem: string; keyPem: string },
): string {
  const b64 = (text: string) => btoa(text);
  // JSON is valid YAML; kubectl and client-node both read it.
  return JSON.stringify(
    {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{
        name: "test",
        cluster: { server: url, "certificate-authority-data": b64(caPem) },
      }],
      users: [
        { name: "admin", user: { token } },
        {
          name: "admin-cert",
          user: {
            "client-certificate-data": b64(cert.certPem),
            "client-key-data": b64(cert.keyPem),
          },
        },
      ],
      contexts: [
        { name: "admin", context: { cluster: "test", user: "admin" } },
        { name: "admin-cert", context: { cluster: "test", user: "admin-cert" } },
      ],
      "current-context": "admin",
    },
    null,
    2,
  );
}

/**
 * Starts etcd and kube-apiserver on free loopback ports and waits until `/readyz` answers 200.
 * Needs the `etcd`, `kube-apiserver` and `kubectl` tools.
 *
 * Only the API server runs: no controllers, scheduler or kubelet, so pods stay Pending, namespaces
 * never finish deleting and no default ServiceAccounts exist (the ServiceAccount admission plugin
 * is disabled for that reason).
 *
 * @throws {ToolMissingError} when a binary is not built
 */
export async function startKubeApiServer(
  options: KubeApiServerOptions = {},
): Promise<KubeApiServer> {
  const etcdBin = toolPath("etcd");
  const apiserverBin = toolPath("kube-apiserver");
  const kubectlBin = toolPath("kubectl");
  const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;

  const dir = await Deno.makeTempDir({ prefix: "spire-cacerts-kube-" });
  const processes: ManagedProcess[] = [];
  const cleanup = async () => {
    for (const proc of processes.reverse()) await proc.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    const pki = join(dir, "pki");
    await Deno.mkdir(pki);
    await Deno.mkdir(join(dir, "logs"));
    const ca = await createCa(pki, "ca", "spire-cacerts-test-ca");
    const bindAddress = options.bindAddress ?? "127.0.0.1";
    const advertiseAddress = options.advertiseAddress ?? bindAddress;
    const serving = await issueCertificate(ca, pki, "apiserver", {
      commonName: "kube-apiserver",
      dnsNames: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
      ipAddresses: [...new Set(["127.0.0.1", "10.0.0.1", bindAddress, advertiseAddress])],
      usage: "server",
    });
    const admin = await issueCertificate(ca, pki, "admin", {
      commonName: "admin",
      organizations: ["system:masters"],
      usage: "client",
    });
    const sa = await generateKeyPair(pki, "service-account");
    const token = crypto.randomUUID().replaceAll("-", "");
    const tokenFile = join(pki, "tokens.csv");
    await Deno.writeTextFile(
      tokenFile,
      `${token},${ADMIN_TOKEN_USER},${ADMIN_TOKEN_USER}-uid,"system:masters"\n`,
    );

    const [etcdClientPort, etcdPeerPort, securePort] = freePorts(3);
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const etcd = startProcess({
      name: "etcd",
      program: etcdBin,
      logPath: join(dir, "logs", "etcd.log"),
      args: [
        "--name=default",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
    });
    processes.push(etcd);

    const kubeletClient = options.kubeletClientCertificate
      ? await issueCertificate(ca, pki, "kubelet-client", {
        commonName: "kube-apiserver-kubelet-client",
        organizations: ["system:masters"],
        usage: "client",
      })
      : undefined;
    const url = `https://${bindAddress}:${securePort}`;
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${bindAddress}`,
      `--advertise-address=${advertiseAddress}`,
      // A loopback advertise address is refused by the default endpoint reconciler.
      ...(advertiseAddress.startsWith("127.") ? ["--endpoint-reconciler-type=none"] : []),
      `--secure-port=${securePort}`,
      `--tls-cert-file=${serving.certPath}`,
      `--tls-private-key-file=${serving.keyPath}`,
      `--client-ca-file=${ca.certPath}`,
      `--token-auth-file=${tokenFile}`,
      "--authorization-mode=RBAC",
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${sa.publicKeyPath}`,
      `--service-account-signing-key-file=${sa.keyPath}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      "--allow-privileged=true",
      ...(options.serviceAccountAdmission ? [] : ["--disable-admission-plugins=ServiceAccount"]),
      ...(kubeletClient
        ? [
          `--kubelet-client-certificate=${kubeletClient.certPath}`,
          `--kubelet-client-key=${kubeletClient.keyPath}`,
        ]
        : []),
      "--profiling=false",
      ...(options.extraArgs ?? []),
    ];
    const startApiserver = () =>
      startProcess({
        name: "kube-apiserver",
        program: apiserverBin,
        logPath: join(dir, "logs", "kube-apiserver.log"),
        args: apiserverArgs,
      });
    let apiserver = startApiserver();
    processes.push(apiserver);

    const waitReady = async (proc: ManagedProcess) => {
      await waitFor(
        `kube-apiserver ${url}/readyz`,
        async () => (await httpsGet(`${url}/readyz`, ca.certPem, token)) === 200,
        {
          timeoutMs: readyTimeoutMs,
          intervalMs: 250,
          abort: () => {
            etcd.assertRunning();
            proc.assertRunning();
          },
          detail: () =>
            `kube-apiserver log (${proc.logPath}):\n${proc.logTail()}\netcd log:\n${
              etcd.logTail(10)
            }`,
        },
      );
    };
    await waitReady(apiserver);

    const kubeconfigPath = join(dir, "kubeconfig");
    await Deno.writeTextFile(kubeconfigPath, kubeconfigYaml(url, ca.certPem, token, admin));
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    const client = new KubeClient(await loadKubeConfigFile(kubeconfigPath));

    let stopped = false;
    return {
      url,
      caPem: ca.certPem,
      token,
      kubeconfigPath,
      kubeConfig,
      client,
      dir,
      pki: {
        caCertPath: ca.certPath,
        caKeyPath: ca.keyPath,
        serviceAccountKeyPath: sa.keyPath,
        serviceAccountPublicKeyPath: sa.publicKeyPath,
        adminCertPath: admin.certPath,
        adminKeyPath: admin.keyPath,
      },
      kubectl(args, kubectlOptions = {}) {
        return runCommand([kubectlBin, `--kubeconfig=${kubeconfigPath}`, ...args], {
          stdin: kubectlOptions.stdin,
          check: kubectlOptions.check,
        });
      },
      async restart() {
        if (stopped) throw new Error("kube-apiserver was stopped; start a new one");
        await apiserver.stop();
        processes.splice(processes.indexOf(apiserver), 1);
        apiserver = startApiserver();
        processes.push(apiserver);
        await waitReady(apiserver);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * Applies the CustomResourceDefinitions in `path` and waits until every one is Established, so
 * objects of their kinds can be created right away.
 *
 * @param kube the API server
 * @param path a manifest of CRDs
 */
export async function installCrds(
  kube: Pick<KubeApiServer, "kubectl">,
  path: string,
): Promise<void> {
  await kube.kubectl(["apply", "-f", path], { check: true });
  await kube.kubectl(
    ["wait", "--for=condition=Established", "--timeout=60s", "-f", path],
    { check: true },
  );
}

/**
 * Writes a kubeconfig (JSON) at `path` that authenticates as a ServiceAccount with a token the API
 * server mints (`kubectl create token`), the way the suites run a program under exactly the
 * manifests' RBAC.
 *
 * @param kube the API server
 * @param account the ServiceAccount's namespace and name
 * @param path where to write it
 * @param duration the token's lifetime (default 2h)
 */
export async function writeServiceAccountKubeconfig(
  kube: KubeApiServer,
  account: { namespace: string; name: string },
  path: string,
  duration = "2h",
): Promise<void> {
  const token = (await kube.kubectl(
    ["create", "token", account.name, "-n", account.namespace, `--duration=${duration}`],
    { check: true },
  )).stdout.trim();
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{
        name: "test",
        cluster: { server: kube.url, "certificate-authority-data": btoa(kube.caPem) },
      }],
      users: [{ name: account.name, user: { token } }],
      contexts: [{ name: account.name, context: { cluster: "test", user: account.name } }],
      "current-context": account.name,
    }),
  );
}
