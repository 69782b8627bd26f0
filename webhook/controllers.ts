/**
 * The controller half of the webhook program in one place: cluster access, the namespace and
 * bundle {@link Controller}, the CAProviderClass status writer, the trust-restart controller
 * (`trust_restart.ts`) and the ClusterSPIFFEID {@link RegistrationSync}, started and stopped
 * together.
 *
 * `main.ts` reaches this module only through a dynamic `import()` and only when the controller
 * runs, so `--controller=false` never loads the Kubernetes client or the controller modules.
 * That is what the split is for: an admission-only webhook idled at 102 MB VmRSS instead of the
 * 162.6 MB it took with them loaded when the client was `@kubernetes/client-node`
 * (`webhook/main.ts --controller=false`, 3 s after `/readyz` turned 200, median of 5 runs on a
 * 2-core box). With kube/'s own client the whole webhook with its controllers idles at 105.9 MB
 * against a real kube-apiserver (bench/idle_programs_bench.ts, median of 3).
 *
 * @module
 */

import { KubeClient, loadKubeConfig } from "../kube/mod.ts";
import type { Logger } from "../cli/mod.ts";
import { startClassStatus } from "./class_status.ts";
import type { ClassStatusController } from "./class_status.ts";
import { Controller, type ControllerOptions } from "./controller.ts";
import { startTrustRestart, type TrustRestartController } from "./trust_restart.ts";
import type { WebhookMetrics } from "./metrics.ts";
import {
  kubeRegistrationApi,
  loadRegistrations,
  type Registration,
  RegistrationSync,
} from "./registrations.ts";

/** Thrown by {@link prepareControllers} when the registrations directory cannot be used. */
export class RegistrationsUnusableError extends Error {
  /**
   * Creates the error.
   *
   * @param dir the registrations directory
   * @param cause what {@link loadRegistrations} threw
   */
  constructor(readonly dir: string, cause: Error) {
    super(cause.message, { cause });
    this.name = "RegistrationsUnusableError";
  }
}

/** Settings of {@link prepareControllers}. */
export interface ControllerSettings {
  /** Kubeconfig path; undefined: the in-cluster service account. */
  kubeconfig: string | undefined;
  /** Controller settings other than cluster access, logging and the write hook. */
  controller: Omit<ControllerOptions, "client" | "log" | "onWrite">;
  /** Trust-restart controller settings; undefined: off (`--trust-restart=false`). */
  trustRestart: { driverName: string; settleMs: number; intervalMs: number } | undefined;
  /** Directory of ClusterSPIFFEID files to keep applied ("" = off). */
  registrationsDir: string;
  /** Period of the registrations' repair pass (ms). */
  registrationsResyncMs: number;
  /**
   * cert-manager's cluster resource namespace, where class status reads a ClusterIssuer's Secret
   * (default `cert-manager`).
   */
  clusterResourceNamespace?: string;
  /** Where events go. */
  log: Logger;
  /** Where counts go. */
  metrics: WebhookMetrics;
}

/** Controllers ready to start. */
export interface Controllers {
  /**
   * Starts them: the namespace/bundle controller and the status writer in the background (their
   * failures are logged), the registrations once their first pass has run.
   */
  start(): Promise<void>;
  /** Stops whatever was started. */
  stop(): Promise<void>;
}

/**
 * Reads the registrations (so a bad file stops the program before anything starts) and returns
 * the controllers, not yet started.
 *
 * @throws {RegistrationsUnusableError} when the registrations directory cannot be used
 */
export async function prepareControllers(settings: ControllerSettings): Promise<Controllers> {
  const { log, metrics } = settings;
  let registered: Registration[] | undefined;
  if (settings.registrationsDir !== "") {
    try {
      registered = await loadRegistrations(settings.registrationsDir);
    } catch (error) {
      throw new RegistrationsUnusableError(settings.registrationsDir, error as Error);
    }
  }
  let controller: Controller | undefined;
  let classStatus: ClassStatusController | undefined;
  let registrations: RegistrationSync | undefined;
  let trustRestart: TrustRestartController | undefined;
  let client: KubeClient | undefined;
  return {
    async start() {
      client = new KubeClient(await loadKubeConfig(settings.kubeconfig));
      controller = new Controller({
        ...settings.controller,
        client,
        log,
        onWrite: (what) => what === "class" ? metrics.classApplied() : metrics.bundleWritten(),
      });
      controller.start().then(
        () => log.info("controller watching namespaces and the SPIRE bundle"),
        (error) => log.error("controller failed to start", { error: String(error) }),
      );
      startClassStatus({
        client,
        log,
        metrics: metrics.registry,
        clusterResourceNamespace: settings.clusterResourceNamespace,
      }).then(
        (started) => {
          classStatus = started;
          log.info("writing the status of every CAProviderClass");
        },
        (error) => log.error("CAProviderClass status failed to start", { error: String(error) }),
      );
      const restart = settings.trustRestart;
      if (restart !== undefined) {
        startTrustRestart({
          client,
          driverName: restart.driverName,
          className: settings.controller.className,
          settleMs: restart.settleMs,
          intervalMs: restart.intervalMs,
          log,
          metrics: metrics.registry,
        }).then(
          (started) => {
            trustRestart = started;
            log.info("rolling out annotated workloads when their classes gain a CA");
          },
          (error) =>
            log.error("trust-restart controller failed to start", { error: String(error) }),
        );
      }
      if (registered !== undefined) {
        registrations = new RegistrationSync({
          dir: settings.registrationsDir,
          api: kubeRegistrationApi(client),
          initial: registered,
          resyncMs: settings.registrationsResyncMs,
          log,
        });
        await registrations.start();
        log.info("keeping ClusterSPIFFEIDs applied", {
          dir: settings.registrationsDir,
          names: registered.map((r) => r.object.metadata.name),
        });
      }
    },
    async stop() {
      await controller?.stop();
      await classStatus?.stop();
      await trustRestart?.stop();
      await registrations?.stop();
      client?.close();
    },
  };
}
