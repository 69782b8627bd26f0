/**
 * What the shipped webhook manifests say, for tests that run `webhook/main.ts` outside a
 * cluster and must run it the way the Deployment does: the webhook container's args, env and
 * `limits.memory` (manifests/webhook/deployment.yaml), and the MutatingWebhookConfiguration
 * (manifests/webhook/mutatingwebhookconfiguration.yaml) with its Service clientConfig swapped for
 * a URL and caBundle. Read from the files each time, so the tests follow the manifests.
 *
 * @module
 */

import { join } from "node:path";
import { parseMemoryQuantity as parseQuantity } from "../../cli/heap_flags.ts";
import {
  loadAllYaml,
  type V1Container,
  type V1Deployment,
  type V1MutatingWebhookConfiguration,
} from "@kubernetes/client-node";

const ROOT = new URL("../..", import.meta.url).pathname;
/** The webhook Deployment manifest. */
export const WEBHOOK_DEPLOYMENT_PATH: string = join(ROOT, "manifests/webhook/deployment.yaml");
/** The MutatingWebhookConfiguration manifest. */
export const WEBHOOK_CONFIGURATION_PATH: string = join(
  ROOT,
  "manifests/webhook/mutatingwebhookconfiguration.yaml",
);
/** Name of the webhook's container in the Deployment. */
export const WEBHOOK_CONTAINER = "webhook";

/** A manifest does not have the shape these helpers read. */
export class WebhookManifestError extends Error {
  /**
   * Creates the error.
   *
   * @param message what is missing or malformed, naming the file
   * @param options the underlying error, if any
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WebhookManifestError";
  }
}

/** The webhook container as the Deployment runs it. */
export interface WebhookContainerSpec {
  /** Its command-line arguments, in order. */
  args: string[];
  /** Its environment (`env[].value`; `valueFrom` entries are refused). */
  env: Record<string, string>;
  /** `resources.limits.memory` in bytes. */
  memoryLimitBytes: number;
  /** `resources.limits.memory` as written, e.g. `384Mi`. */
  memoryLimit: string;
}

/**
 * Bytes of a Kubernetes memory quantity (`cli/heap_flags.ts`, the parser the manifest tests and
 * `scripts/build.ts` use): a decimal number with an optional binary (`Ki`, `Mi`,
 * `Gi`, `Ti`) or decimal (`k`, `M`, `G`, `T`) suffix, rounded up to a whole byte.
 *
 * @param quantity e.g. `384Mi`, `1G`, `134217728`
 * @throws {WebhookManifestError} for anything else (including milli `m` and exponents)
 */
export function parseMemoryQuantity(quantity: string): number {
  try {
    return parseQuantity(quantity);
  } catch (error) {
    throw new WebhookManifestError(`not a memory quantity: ${JSON.stringify(quantity)}`, {
      cause: error,
    });
  }
}

function loadDocuments<T>(path: string): T[] {
  try {
    return loadAllYaml(Deno.readTextFileSync(path)) as T[];
  } catch (error) {
    throw new WebhookManifestError(`cannot read ${path}`, { cause: error });
  }
}

/**
 * Reads the webhook container of manifests/webhook/deployment.yaml.
 *
 * @param path the Deployment manifest (default {@link WEBHOOK_DEPLOYMENT_PATH})
 * @throws {WebhookManifestError} when the container, its limit or a plain env value is missing
 */
export function readWebhookContainer(path = WEBHOOK_DEPLOYMENT_PATH): WebhookContainerSpec {
  const deployment = loadDocuments<V1Deployment>(path).find((d) => d.kind === "Deployment");
  const container: V1Container | undefined = deployment?.spec?.template.spec?.containers.find((
    c,
  ) => c.name === WEBHOOK_CONTAINER);
  if (!container) {
    throw new WebhookManifestError(`${path}: no Deployment with a container ${WEBHOOK_CONTAINER}`);
  }
  const memoryLimit = container.resources?.limits?.memory;
  if (memoryLimit === undefined) {
    throw new WebhookManifestError(`${path}: container ${WEBHOOK_CONTAINER} has no limits.memory`);
  }
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    if (variable.value === undefined) {
      throw new WebhookManifestError(
        `${path}: env ${variable.name} is not a plain value; this helper only copies values`,
      );
    }
    env[variable.name] = variable.value;
  }
  return {
    args: [...(container.args ?? [])],
    env,
    memoryLimit: String(memoryLimit),
    memoryLimitBytes: parseMemoryQuantity(String(memoryLimit)),
  };
}

/**
 * Replaces flag values in an argument list: each `--name=value` whose name is a key of
 * `overrides` gets the new value (or is dropped for `null`); overrides naming a flag that is not
 * there are appended.
 *
 * @param args `--name=value` arguments
 * @param overrides new values by flag name (without dashes)
 * @returns the new argument list
 */
export function overrideFlags(
  args: readonly string[],
  overrides: Record<string, string | null>,
): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const arg of args) {
    const name = /^--([^=]+)/.exec(arg)?.[1];
    if (name === undefined || !(name in overrides)) {
      out.push(arg);
      continue;
    }
    seen.add(name);
    const value = overrides[name];
    if (value !== null) out.push(`--${name}=${value}`);
  }
  for (const [name, value] of Object.entries(overrides)) {
    if (!seen.has(name) && value !== null) out.push(`--${name}=${value}`);
  }
  return out;
}

/**
 * The shipped MutatingWebhookConfiguration with every webhook's clientConfig pointing at `url`
 * with `caBundle` (base64 PEM) instead of the Service: without a cluster there is no Service
 * for the API server to reach. Everything else (rules, selectors, failurePolicy, timeoutSeconds,
 * reinvocationPolicy...) is the manifest's.
 *
 * @param url the webhook's /mutate URL
 * @param caBundle base64 of the PEM CA the serving certificate chains to
 * @param path the manifest (default {@link WEBHOOK_CONFIGURATION_PATH})
 * @throws {WebhookManifestError} when the manifest has no such object
 */
export function webhookConfigurationForUrl(
  url: string,
  caBundle: string,
  path = WEBHOOK_CONFIGURATION_PATH,
): V1MutatingWebhookConfiguration {
  const configuration = loadDocuments<V1MutatingWebhookConfiguration>(path).find((d) =>
    d.kind === "MutatingWebhookConfiguration"
  );
  if (!configuration?.webhooks?.length) {
    throw new WebhookManifestError(`${path}: no MutatingWebhookConfiguration with webhooks`);
  }
  return {
    ...configuration,
    webhooks: configuration.webhooks.map((webhook) => {
      const servicePath = webhook.clientConfig.service?.path ?? "";
      if (!url.endsWith(servicePath)) {
        throw new WebhookManifestError(
          `${path}: webhook ${webhook.name} serves ${servicePath}, the URL is ${url}`,
        );
      }
      return { ...webhook, clientConfig: { url, caBundle } };
    }),
  };
}
