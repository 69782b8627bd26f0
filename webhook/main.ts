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

import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import denoJson from "../deno.json" with { type: "json" };
import { createLogger, type LogLevel } from "../cli/mod.ts";
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

const HELP = `${PROGRAM} ${denoJson.version}
Admission webhook adding the SPIRE trust-store CSI volume to pods labelled
spiffe.io/spire-managed-identity=true, plus a controller keeping a CAProviderClass in every
namespace and the Secret spire/spire-ca-bundle equal to SPIRE's bundle.

Flags:
  --port N                    HTTPS port of /mutate (default 8443)
  --cert-dir DIR              spiffe-helper's directory: svid.pem, svid_key.pem, svid_bundle.pem
                              (default /run/spiffe/certs)
  --health-port N             plain HTTP /healthz, /readyz, /metrics (default 9440)
  --bind-address ADDR         address both ports bind to (default 0.0.0.0)
  --driver-name NAME          CSI driver of the added volume (default cacerts.csi.cert-manager.io)
  --class-name NAME           per-namespace CAProviderClass (default spire-ca)
  --excluded-namespaces LIST  namespaces without a class (default ${
  DEFAULT_EXCLUDED_NAMESPACES.join(",")
})
  --kubeconfig PATH           cluster access (default: in-cluster service account)
  --controller=false          serve admissions only; no namespace or bundle controller
  --registrations-dir DIR     keep the ClusterSPIFFEIDs of DIR/*.yaml applied (server-side apply,
                              waits for their CRD; needs the controller; default empty: off)
  --registrations-resync D    re-apply them this often to repair drift (default 5m; ms, s, m, h)
  --failure-policy P          answer when the mutation itself fails: Fail (reject) or Ignore
                              (default Fail, matching the MutatingWebhookConfiguration)
  --log-level L               debug, info, warn, error (default info)
  --self-test                 run the mutation in memory, print "${PROGRAM} self-test ok"
  --version, --help

Pod annotations (prefix cacerts.spiffe.io/): inject=false, os=<family>, containers=a,b,
mount-path=/path, env=true.`;

/** Thrown for a bad command line. */
export class UsageError extends Error {
  /** Creates the error with the message shown before the hint to run --help. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

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
  mode: "run" | "help" | "version" | "self-test";
}

function port(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new UsageError(`--${name}: ${JSON.stringify(value)} is not a port number`);
  }
  return n;
}

/** Parses a duration such as `500ms`, `2s`, `5m` or `1h` into milliseconds. */
function duration(name: string, value: string): number {
  const match = /^(\d+)(ms|s|m|h)$/.exec(value.trim());
  const ms = match ? Number(match[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[match[2]]! : 0;
  if (!match || ms <= 0) {
    throw new UsageError(
      `--${name}: ${JSON.stringify(value)} is not a positive duration such as 2s or 5m`,
    );
  }
  return ms;
}

/**
 * Parses the command line.
 *
 * @throws {UsageError} for unknown flags or bad values
 */
export function parseFlags(args: string[]): WebhookFlags {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string", default: "8443" },
        "cert-dir": { type: "string", default: "/run/spiffe/certs" },
        "health-port": { type: "string", default: "9440" },
        "bind-address": { type: "string", default: "0.0.0.0" },
        "driver-name": { type: "string", default: "cacerts.csi.cert-manager.io" },
        "class-name": { type: "string", default: "spire-ca" },
        "excluded-namespaces": { type: "string", default: DEFAULT_EXCLUDED_NAMESPACES.join(",") },
        kubeconfig: { type: "string" },
        controller: { type: "string", default: "true" },
        "registrations-dir": { type: "string", default: "" },
        "registrations-resync": {
          type: "string",
          default: `${DEFAULT_REGISTRATION_RESYNC_MS / 60_000}m`,
        },
        "failure-policy": { type: "string", default: "Fail" },
        "log-level": { type: "string", default: "info" },
        "self-test": { type: "boolean", default: false },
        version: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const controller = values.controller;
  if (controller !== "true" && controller !== "false") {
    throw new UsageError(`--controller: ${JSON.stringify(controller)} is not true or false`);
  }
  const registrationsDir = values["registrations-dir"].trim();
  if (registrationsDir !== "" && controller === "false") {
    throw new UsageError("--registrations-dir needs the controller; drop --controller=false");
  }
  const failurePolicy = values["failure-policy"];
  if (failurePolicy !== "Fail" && failurePolicy !== "Ignore") {
    throw new UsageError(
      `--failure-policy: ${JSON.stringify(failurePolicy)} is not Fail or Ignore`,
    );
  }
  const logLevel = values["log-level"];
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    throw new UsageError(
      `--log-level: ${JSON.stringify(logLevel)} is not debug, info, warn or error`,
    );
  }
  for (const name of ["driver-name", "class-name", "cert-dir"] as const) {
    if (values[name].trim() === "") throw new UsageError(`--${name} is empty`);
  }
  return {
    port: port("port", values.port),
    certDir: values["cert-dir"],
    healthPort: port("health-port", values["health-port"]),
    bindAddress: values["bind-address"],
    driverName: values["driver-name"],
    className: values["class-name"],
    excludedNamespaces: values["excluded-namespaces"].split(",").map((s) => s.trim()).filter(
      Boolean,
    ),
    kubeconfig: values.kubeconfig,
    controller: controller === "true",
    registrationsDir,
    registrationsResyncMs: duration("registrations-resync", values["registrations-resync"]),
    failurePolicy,
    logLevel: logLevel as LogLevel,
    mode: values.help
      ? "help"
      : values.version
      ? "version"
      : values["self-test"]
      ? "self-test"
      : "run",
  };
}

/**
 * Runs a labelled pod and a bad request through the app in memory.
 *
 * @throws {Error} when the mutation does not behave
 */
export async function selfTest(): Promise<void> {
  const app = createApp({ driverName: "cacerts.csi.cert-manager.io", className: "spire-ca" });
  const review = {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "self-test",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: "default",
      object: {
        metadata: { name: "p", labels: { "spiffe.io/spire-managed-identity": "true" } },
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

if (import.meta.main) {
  let flags: WebhookFlags;
  try {
    flags = parseFlags(Deno.args);
  } catch (error) {
    console.error(`${PROGRAM}: ${(error as Error).message}\nRun with --help for usage.`);
    Deno.exit(2);
  }
  if (flags.mode === "help") console.log(HELP);
  else if (flags.mode === "version") console.log(`${PROGRAM} ${denoJson.version}`);
  else if (flags.mode === "self-test") {
    await selfTest();
    console.log(`${PROGRAM} self-test ok`);
  } else await run(flags);
}
