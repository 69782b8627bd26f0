/**
 * `spire-cacerts-webhook`: the admission webhook that gives labelled pods the SPIRE trust-store
 * CSI volume, and the controller that keeps each namespace's CAProviderClass and the SPIRE CA
 * bundle Secret current.
 *
 * ```sh
 * deno run -A webhook/main.ts --cert-dir /run/spiffe/certs --port 8443 --health-port 9440
 * ```
 *
 * @module
 */

import { KubeConfig } from "@kubernetes/client-node";
import {
  answerMode,
  createLogger,
  type FlagTable,
  LOG_LEVELS,
  type LogLevel,
  type Mode,
  modeOf,
  parseFlagTable,
  renderFlags,
  UsageError,
  VERSION,
} from "../cli/mod.ts";
import { ANNOTATION_PREFIX, DRIVER_NAME, INJECT_LABEL } from "../api/mod.ts";
import { createApp } from "./app.ts";
import { type ClassStatusController, startClassStatus } from "./class_status.ts";
import { Controller, DEFAULT_EXCLUDED_NAMESPACES } from "./controller.ts";
import {
  DEFAULT_REGISTRATION_RESYNC_MS,
  kubeRegistrationApi,
  loadRegistrations,
  RegistrationSync,
} from "./registrations.ts";
import { WebhookMetrics } from "./metrics.ts";
import { startWebhookServer } from "./server.ts";

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
  kubeconfig: {
    type: "string",
    arg: "PATH",
    help: "cluster access (default: in-cluster service account)",
  },
  controller: {
    type: "boolean",
    label: "--controller=false",
    default: "true",
    help: "serve admissions only; no namespace or bundle controller",
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
namespace and the Secret spire/spire-ca-bundle equal to SPIRE's bundle.

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
  /** Kubeconfig path, or undefined for in-cluster. */
  kubeconfig: string | undefined;
  /** Whether the controller runs. */
  controller: boolean;
  /** Directory of ClusterSPIFFEID files to keep applied ("" = off). */
  registrationsDir: string;
  /** Period of the registrations' repair pass (ms). */
  registrationsResyncMs: number;
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
    kubeconfig: values.kubeconfig,
    controller: values.controller,
    registrationsDir: values["registrations-dir"],
    registrationsResyncMs: values["registrations-resync"],
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
  const metrics = new WebhookMetrics();
  // A registrations file that cannot be applied is a deployment error: say which one and stop.
  const registered = flags.registrationsDir === ""
    ? undefined
    : await loadRegistrations(flags.registrationsDir).catch((error: Error) => {
      log.error("cannot start: registrations unusable", { error: error.message });
      Deno.exit(1);
    });
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
    },
    log,
    metrics,
  });
  let controller: Controller | undefined;
  let registrations: RegistrationSync | undefined;
  let classStatus: ClassStatusController | undefined;
  if (flags.controller) {
    const kubeConfig = new KubeConfig();
    if (flags.kubeconfig) kubeConfig.loadFromFile(flags.kubeconfig);
    else kubeConfig.loadFromCluster();
    controller = new Controller({
      kubeConfig,
      className: flags.className,
      excludedNamespaces: flags.excludedNamespaces,
      log,
      onWrite: (what) => what === "class" ? metrics.classApplied() : metrics.bundleWritten(),
    });
    controller.start().then(
      () => log.info("controller watching namespaces and the SPIRE bundle"),
      (error) => log.error("controller failed to start", { error: String(error) }),
    );
    startClassStatus({ kubeConfig, log, metrics: metrics.registry }).then(
      (started) => {
        classStatus = started;
        log.info("writing the status of every CAProviderClass");
      },
      (error) => log.error("CAProviderClass status failed to start", { error: String(error) }),
    );
    if (registered !== undefined) {
      registrations = new RegistrationSync({
        dir: flags.registrationsDir,
        api: kubeRegistrationApi(kubeConfig),
        initial: registered,
        resyncMs: flags.registrationsResyncMs,
        log,
      });
      await registrations.start();
      log.info("keeping ClusterSPIFFEIDs applied", {
        dir: flags.registrationsDir,
        names: registered.map((r) => r.object.metadata.name),
      });
    }
  }
  const stop = async (signal: string) => {
    log.info("stopping", { signal });
    await controller?.stop();
    await classStatus?.stop();
    await registrations?.stop();
    await server.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
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
