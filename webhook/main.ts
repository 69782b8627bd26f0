/**
 * `spire-cacerts-webhook`: the admission webhook that gives labelled pods the SPIRE trust-store
 * CSI volume, and the controller that keeps each namespace's CAProviderClass and the SPIRE CA
 * bundle Secret current.
 *
 * ```sh
 * deno run -A webhook/main.ts --cert-dir /run/spiffe/certs --port 8443 --health-port 9440
 * ```
 *
 * SIGTERM and SIGINT drain rather than drop (see `server.ts`): `/readyz` 503 at once, HTTPS
 * serving on for `--shutdown-delay`, then in-flight requests finishing within
 * `--shutdown-timeout`, the controllers stopped alongside, and exit 0. A second signal exits at
 * once with 1.
 *
 * The controllers (`controllers.ts`, and with it kube/'s Kubernetes client) are loaded with a
 * dynamic `import()` only when they run: with `--controller=false` the program idled at 102 MB
 * VmRSS instead of 162.6 MB while the client was `@kubernetes/client-node` (a bare Deno process:
 * 63.8 MB; median of 5 runs, 3 s after `/readyz` turned 200, Deno 2.8.3 on a 2-core Debian box);
 * with kube/'s own client the controllers cost ~4 MB (105.9 MB with them, against a real
 * kube-apiserver, bench/idle_programs_bench.ts).
 *
 * @module
 */

import {
  answerMode,
  createLogger,
  type FlagTable,
  heapLimitWarning,
  LOG_LEVELS,
  type LogLevel,
  type Mode,
  modeOf,
  parseFlagTable,
  renderFlags,
  UsageError,
  VERSION,
} from "../cli/mod.ts";
import {
  ANNOTATION_PREFIX,
  DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
  DRIVER_NAME,
  INJECT_LABEL,
  isNamespaceName,
} from "../api/mod.ts";
import { createApp, DEFAULT_BODY_TIMEOUT_MS } from "./app.ts";
import type { Controllers } from "./controllers.ts";
import { WebhookMetrics } from "./metrics.ts";
import {
  DEFAULT_EXPIRY_MARGIN_MS,
  DEFAULT_SHUTDOWN_DELAY_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  startWebhookServer,
} from "./server.ts";
import { DEFAULT_TRUST_DOMAIN, signerNameFor } from "./cluster_trust_bundle.ts";
import { DEFAULT_INTERVAL_MS, DEFAULT_SETTLE_MS } from "./trust_restart_plan.ts";

// Defaults of the controller modules, repeated because importing them would load the controller
// (and the Kubernetes client); `main_test.ts` checks they are still equal.
const DEFAULT_EXCLUDED_NAMESPACES = [
  "kube-system",
  "kube-public",
  "kube-node-lease",
  "spire",
  "spire-cacerts",
];
const DEFAULT_REGISTRATION_RESYNC_MS = 5 * 60_000;

/** Program name as it appears in `--version` and `--self-test`. */
export const PROGRAM = "spire-cacerts-webhook";

/** The command line: name, kind, default, check and help line of every flag. */
export const WEBHOOK_FLAGS = {
  port: {
    type: "number",
    arg: "N",
    min: 0,
    max: 65535,
    expect: "a port number",
    default: "8443",
    help: "HTTPS port of /mutate (default {default})",
  },
  "cert-dir": {
    type: "string",
    arg: "DIR",
    nonEmpty: true,
    default: "/run/spiffe/certs",
    help: "spiffe-helper's directory: svid.pem, svid_key.pem, svid_bundle.pem\n(default {default})",
  },
  "health-port": {
    type: "number",
    arg: "N",
    min: 0,
    max: 65535,
    expect: "a port number",
    default: "9440",
    help: "plain HTTP /healthz, /readyz, /metrics (default {default})",
  },
  "bind-address": {
    type: "string",
    arg: "ADDR",
    default: "0.0.0.0",
    help: "address both ports bind to (default {default})",
  },
  "driver-name": {
    type: "string",
    arg: "NAME",
    nonEmpty: true,
    default: DRIVER_NAME,
    help: "CSI driver of the added volume (default {default})",
  },
  "class-name": {
    type: "string",
    arg: "NAME",
    nonEmpty: true,
    default: "spire-ca",
    help: "per-namespace CAProviderClass (default {default})",
  },
  "excluded-namespaces": {
    type: "list",
    arg: "LIST",
    default: DEFAULT_EXCLUDED_NAMESPACES.join(","),
    help: "namespaces without a class (default {default})",
  },
  "bundle-secret": {
    type: "boolean",
    label: "--bundle-secret=false",
    default: "true",
    help: "do not keep Secret spire/spire-ca-bundle (read by classes naming it)",
  },
  "cluster-trust-bundle": {
    type: "boolean",
    label: "--cluster-trust-bundle=false",
    default: "true",
    help: "no ClusterTrustBundle; managed classes name the Secret",
  },
  "trust-domain": {
    type: "string",
    arg: "TD",
    default: DEFAULT_TRUST_DOMAIN,
    parse: (text: string) => (signerNameFor(text), text),
    help: "SPIRE's trust domain: the bundle's signer is\n" +
      "cacerts.csi.cert-manager.io/spire-TD (default {default})",
  },
  kubeconfig: {
    type: "string",
    arg: "PATH",
    help: "cluster access (default: in-cluster service account)",
  },
  "cluster-resource-namespace": {
    type: "string",
    arg: "NS",
    nonEmpty: true,
    default: DEFAULT_CLUSTER_RESOURCE_NAMESPACE,
    expect: "a namespace name",
    parse: (text: string) => isNamespaceName(text) ? text : undefined,
    help: "\nclass status reads a ClusterIssuer's CA Secret here: cert-manager's\n" +
      "own --cluster-resource-namespace (default {default})",
  },
  controller: {
    type: "boolean",
    label: "--controller=false",
    default: "true",
    help: "serve admissions only; no namespace or bundle controller",
  },
  "trust-restart": {
    type: "boolean",
    label: "--trust-restart=false",
    default: "true",
    help: "never roll out workloads annotated\n" +
      "cacerts.spiffe.io/restart-on-trust-change (default: roll them out when\n" +
      "their classes gain a CA)",
  },
  "trust-restart-settle": {
    type: "duration",
    arg: "D",
    allowZero: true,
    default: `${DEFAULT_SETTLE_MS / 1000}s`,
    help: "wait this long after a CA is gained before rolling out, so several\n" +
      "changes make one rollout (default {default})",
  },
  "trust-restart-interval": {
    type: "duration",
    arg: "D",
    allowZero: true,
    default: `${DEFAULT_INTERVAL_MS / 60_000}m`,
    help: "at most one trust rollout per workload in this time (default {default})",
  },
  "registrations-dir": {
    type: "string",
    arg: "DIR",
    default: "",
    parse: (text: string) => text.trim(),
    help: "keep the ClusterSPIFFEIDs of DIR/*.yaml applied (server-side apply,\n" +
      "waits for their CRD; needs the controller; default empty: off)",
  },
  "registrations-resync": {
    type: "duration",
    arg: "D",
    default: `${DEFAULT_REGISTRATION_RESYNC_MS / 60_000}m`,
    help: "re-apply them this often to repair drift (default {default}; ms, s, m, h)",
  },
  "shutdown-delay": {
    type: "duration",
    arg: "D",
    allowZero: true,
    default: `${DEFAULT_SHUTDOWN_DELAY_MS / 1000}s`,
    help: "on SIGTERM, keep serving this long with /readyz failing, so endpoint\n" +
      "removal reaches kube-proxy and the API servers (default {default}; 0: none)",
  },
  "shutdown-timeout": {
    type: "duration",
    arg: "D",
    default: `${DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000}s`,
    help: "then let in-flight requests finish for at most this long (default {default})",
  },
  "svid-expiry-margin": {
    type: "duration",
    arg: "D",
    allowZero: true,
    default: `${DEFAULT_EXPIRY_MARGIN_MS / 60_000}m`,
    help: "/readyz fails this long before the served SVID expires, at most a quarter\n" +
      "of its lifetime (default {default}; SPIRE's 1h SVIDs are renewed at half-life)",
  },
  "max-in-flight-bytes": {
    type: "number",
    arg: "N",
    min: 0,
    default: "0",
    help: "request-body bytes held at once before a fast 429 (default 0: 1/32 of\n" +
      "the container memory limit, at least one 3 MiB review)",
  },
  "body-timeout": {
    type: "duration",
    arg: "D",
    default: `${DEFAULT_BODY_TIMEOUT_MS / 1000}s`,
    help: "a body not received in full by then is refused with 408 (default {default})",
  },
  "failure-policy": {
    type: "enum",
    arg: "P",
    values: ["Fail", "Ignore"],
    default: "Fail",
    help: "answer when the mutation itself fails: Fail (reject) or Ignore\n" +
      "(default {default}, matching the MutatingWebhookConfiguration)",
  },
  "log-level": {
    type: "enum",
    arg: "L",
    values: LOG_LEVELS,
    default: "info",
    help: "debug, info, warn, error (default {default})",
  },
  "self-test": {
    type: "boolean",
    help: `run the mutation in memory, print "${PROGRAM} self-test ok"`,
  },
  version: { type: "boolean", hidden: true, help: "print the version" },
  help: { type: "boolean", label: "--version, --help", help: "" },
} as const satisfies FlagTable;

const HELP = `${PROGRAM} ${VERSION}
Admission webhook adding the SPIRE trust-store CSI volume to pods labelled
${INJECT_LABEL}=true, plus a controller keeping a CAProviderClass in every
namespace and SPIRE's bundle published as a ClusterTrustBundle and as the
Secret spire/spire-ca-bundle.

Flags:
${renderFlags(WEBHOOK_FLAGS)}

Pod annotations (prefix ${ANNOTATION_PREFIX}): inject=false, os=<family>, containers=a,b,
mount-path=/path, env=true.`;

export { UsageError };

/** Parsed command line. */
export interface WebhookFlags {
  /** HTTPS port. */
  port: number;
  /** spiffe-helper directory. */
  certDir: string;
  /** Health port. */
  healthPort: number;
  /** Bind address. */
  bindAddress: string;
  /** CSI driver name. */
  driverName: string;
  /** CAProviderClass name. */
  className: string;
  /** Namespaces without a class. */
  excludedNamespaces: string[];
  /** Whether the Secret spire/spire-ca-bundle is kept. */
  bundleSecret: boolean;
  /** Whether SPIRE's bundle is published as a ClusterTrustBundle (and classes name it). */
  clusterTrustBundle: boolean;
  /** SPIRE's trust domain, naming the ClusterTrustBundle's signer. */
  trustDomain: string;
  /** Kubeconfig path, or undefined for in-cluster. */
  kubeconfig: string | undefined;
  /** cert-manager's cluster resource namespace: where a ClusterIssuer's CA Secret is read. */
  clusterResourceNamespace: string;
  /** Whether the controller runs. */
  controller: boolean;
  /** Whether annotated workloads are rolled out when their classes gain a CA. */
  trustRestart: boolean;
  /** Settle delay of a trust rollout (ms). */
  trustRestartSettleMs: number;
  /** Least time between two trust rollouts of one workload (ms). */
  trustRestartIntervalMs: number;
  /** Directory of ClusterSPIFFEID files to keep applied ("" = off). */
  registrationsDir: string;
  /** Period of the registrations' repair pass (ms). */
  registrationsResyncMs: number;
  /** Drain delay on SIGTERM/SIGINT (ms). */
  shutdownDelayMs: number;
  /** Bound on in-flight requests after the delay (ms). */
  shutdownTimeoutMs: number;
  /** `/readyz` fails this long before the served SVID expires (ms). */
  svidExpiryMarginMs: number;
  /** Request-body bytes in flight before 429 (0: derived from the container memory limit). */
  maxInFlightBytes: number;
  /** A body must arrive in full within this (ms). */
  bodyTimeoutMs: number;
  /** Failure policy of the mutation. */
  failurePolicy: "Fail" | "Ignore";
  /** Log level. */
  logLevel: LogLevel;
  /** Mode. */
  mode: Mode;
}

/**
 * Parses the command line.
 *
 * @throws {UsageError} for unknown flags or bad values
 */
export function parseFlags(args: string[]): WebhookFlags {
  const values = parseFlagTable(WEBHOOK_FLAGS, args);
  if (values["registrations-dir"] !== "" && !values.controller) {
    throw new UsageError("--registrations-dir needs the controller; drop --controller=false");
  }
  return {
    port: values.port,
    certDir: values["cert-dir"],
    healthPort: values["health-port"],
    bindAddress: values["bind-address"],
    driverName: values["driver-name"],
    className: values["class-name"],
    excludedNamespaces: values["excluded-namespaces"],
    bundleSecret: values["bundle-secret"],
    clusterTrustBundle: values["cluster-trust-bundle"],
    trustDomain: values["trust-domain"],
    kubeconfig: values.kubeconfig,
    clusterResourceNamespace: values["cluster-resource-namespace"],
    controller: values.controller,
    trustRestart: values["trust-restart"],
    trustRestartSettleMs: values["trust-restart-settle"],
    trustRestartIntervalMs: values["trust-restart-interval"],
    registrationsDir: values["registrations-dir"],
    registrationsResyncMs: values["registrations-resync"],
    shutdownDelayMs: values["shutdown-delay"],
    shutdownTimeoutMs: values["shutdown-timeout"],
    svidExpiryMarginMs: values["svid-expiry-margin"],
    maxInFlightBytes: values["max-in-flight-bytes"],
    bodyTimeoutMs: values["body-timeout"],
    failurePolicy: values["failure-policy"],
    logLevel: values["log-level"],
    mode: modeOf(values),
  };
}

/**
 * Runs a labelled pod and a bad request through the app in memory.
 *
 * @throws {Error} when the mutation does not behave
 */
export async function selfTest(): Promise<void> {
  const app = createApp({ driverName: DRIVER_NAME, className: "spire-ca" });
  const review = {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "self-test",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: "default",
      object: {
        metadata: { name: "p", labels: { [INJECT_LABEL]: "true" } },
        spec: { containers: [{ name: "c", image: "i" }] },
      },
    },
  };
  const response = await app.request("/mutate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(review),
  });
  const body = await response.json() as { response?: { allowed?: boolean; patch?: string } };
  const patch = JSON.parse(atob(body.response?.patch ?? "W10=")) as { path: string }[];
  if (
    response.status !== 200 || body.response?.allowed !== true ||
    !patch.some((op) => op.path === "/spec/volumes") ||
    !patch.some((op) => op.path === "/spec/containers/0/volumeMounts")
  ) {
    throw new Error(`self-test: unexpected mutation ${JSON.stringify(body)}`);
  }
  const bad = await app.request("/mutate", { method: "POST", body: "{" });
  if (bad.status !== 415) throw new Error(`self-test: bad request answered ${bad.status}`);
}

async function run(flags: WebhookFlags): Promise<void> {
  const log = createLogger(flags.logLevel);
  const heapWarning = heapLimitWarning();
  if (heapWarning) log.warn(heapWarning);
  const metrics = new WebhookMetrics();
  // Loaded only when the controller runs (see the module doc). A registrations file that cannot
  // be applied is a deployment error: say which one and stop before anything starts.
  let controllers: Controllers | undefined;
  if (flags.controller) {
    const { prepareControllers } = await import("./controllers.ts");
    controllers = await prepareControllers({
      kubeconfig: flags.kubeconfig,
      controller: {
        className: flags.className,
        excludedNamespaces: flags.excludedNamespaces,
        writeBundleSecret: flags.bundleSecret,
        clusterTrustBundle: flags.clusterTrustBundle
          ? { trustDomain: flags.trustDomain }
          : undefined,
      },
      trustRestart: flags.trustRestart
        ? {
          driverName: flags.driverName,
          settleMs: flags.trustRestartSettleMs,
          intervalMs: flags.trustRestartIntervalMs,
        }
        : undefined,
      registrationsDir: flags.registrationsDir,
      registrationsResyncMs: flags.registrationsResyncMs,
      clusterResourceNamespace: flags.clusterResourceNamespace,
      log,
      metrics,
    }).catch((error: Error) => {
      log.error("cannot start: registrations unusable", { error: error.message });
      Deno.exit(1);
    });
  }
  // The HTTPS port waits for the SVID; the health port and the controller start now, since the
  // webhook's own ClusterSPIFFEID (and so its SVID) may come from the controller.
  const server = await startWebhookServer({
    certDir: flags.certDir,
    port: flags.port,
    healthPort: flags.healthPort,
    host: flags.bindAddress,
    app: {
      driverName: flags.driverName,
      className: flags.className,
      failurePolicy: flags.failurePolicy,
      maxInFlightBytes: flags.maxInFlightBytes || undefined,
      bodyTimeoutMs: flags.bodyTimeoutMs,
    },
    log,
    metrics,
    expiryMarginMs: flags.svidExpiryMarginMs,
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      log.warn("second signal: exiting now", { signal });
      Deno.exit(1);
    }
    stopping = true;
    log.info("stopping", { signal });
    // The controllers stop alongside the drain; neither may hold the exit past its bound.
    const bound = flags.shutdownDelayMs + flags.shutdownTimeoutMs;
    const stopControllers = (controllers?.stop() ?? Promise.resolve()).catch((error) =>
      log.warn("controllers did not stop cleanly", { error: String(error) })
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.all([
      server.shutdown({ delayMs: flags.shutdownDelayMs, timeoutMs: flags.shutdownTimeoutMs }),
      Promise.race([
        stopControllers,
        new Promise<void>((resolve) => timer = setTimeout(resolve, bound)),
      ]),
    ]);
    clearTimeout(timer);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  await controllers?.start();
}

/**
 * Command-line entry point: parses the flags, then prints help, the version or the self-test
 * result, or runs the webhook until SIGTERM/SIGINT (which exit the process).
 *
 * @param args command-line arguments
 * @returns exit code (2 for bad flags)
 */
export async function main(args: string[]): Promise<number> {
  let flags: WebhookFlags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    console.error(`${PROGRAM}: ${(error as Error).message}\nRun with --help for usage.`);
    return 2;
  }
  const answered = await answerMode(flags.mode, {
    program: PROGRAM,
    version: VERSION,
    help: HELP,
    selfTest,
  });
  if (answered !== undefined) return answered;
  await run(flags);
  // Serving until a signal handler exits the process.
  return await new Promise<number>(() => {});
}

if (import.meta.main) Deno.exit(await main(Deno.args));
