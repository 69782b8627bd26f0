/**
 * Cluster access settings: the API server, how its certificate is checked and how the client
 * authenticates, read from the in-cluster service account or from a kubeconfig file.
 *
 * A kubeconfig is read as JSON (what the test harness and the manifests' tooling write) and,
 * when it is not JSON, as YAML through `js-yaml`, imported only then: the programs in a cluster
 * use the in-cluster service account and never load a YAML parser.
 *
 * Limits: the kubeconfig's `exec` and `auth-provider` credential plugins, basic auth
 * (`username`/`password`) and a cluster's `proxy-url` are refused with an error naming the field;
 * a token, a token file and a client certificate are supported, and so are `as`/`as-groups`
 * (impersonation).
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";

/** Where the kubelet mounts a pod's service account credentials. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** How the client reaches and authenticates to the API server. */
export interface KubeConfig {
  /** Base URL of the API server, e.g. `https://10.96.0.1:443`. */
  server: string;
  /** PEM of the CAs the server's certificate must chain to (default: the system's roots). */
  caPem?: string;
  /** Skip checking the server's certificate (kubeconfig `insecure-skip-tls-verify`). */
  insecureSkipTlsVerify?: boolean;
  /** A fixed bearer token. */
  token?: string;
  /** A file holding the bearer token, re-read periodically (bound tokens rotate). */
  tokenFile?: string;
  /** PEM client certificate. */
  certPem?: string;
  /** PEM key of {@link certPem}. */
  keyPem?: string;
  /** User to impersonate (`Impersonate-User`). */
  impersonateUser?: string;
  /** Groups to impersonate (`Impersonate-Group`). */
  impersonateGroups?: readonly string[];
}

/** The cluster access settings could not be read. */
export class KubeConfigError extends Error {
  /**
   * Makes the error.
   *
   * @param message what is wrong, naming the file or field
   * @param options the underlying error, if any
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "KubeConfigError";
  }
}

/** Collaborators of {@link loadInClusterConfig}, replaceable in tests. */
export interface InClusterOptions {
  /** Reads an environment variable (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** The service account mount (default {@link SERVICE_ACCOUNT_DIR}). */
  dir?: string;
}

/**
 * The in-cluster service account: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
 * the mount's `ca.crt`, and its `token` as a file re-read by the client.
 *
 * @throws {KubeConfigError} when the variables are unset or the mount is unreadable
 */
export async function loadInClusterConfig(options: InClusterOptions = {}): Promise<KubeConfig> {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const dir = options.dir ?? SERVICE_ACCOUNT_DIR;
  const host = env("KUBERNETES_SERVICE_HOST");
  const port = env("KUBERNETES_SERVICE_PORT");
  if (!host || !port) {
    throw new KubeConfigError(
      "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; " +
        "pass --kubeconfig",
    );
  }
  const tokenFile = join(dir, "token");
  let caPem: string;
  try {
    caPem = await Deno.readTextFile(join(dir, "ca.crt"));
    await Deno.stat(tokenFile);
  } catch (error) {
    throw new KubeConfigError(
      `cannot read the service account in ${dir}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const hostPart = host.includes(":") ? `[${host}]` : host;
  return { server: `https://${hostPart}:${port}`, caPem, tokenFile };
}

type Fields = Record<string, unknown>;

function isFields(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function named(list: unknown, name: string, field: string, path: string): Fields {
  const entry = Array.isArray(list)
    ? list.find((e) => isFields(e) && e.name === name) as Fields | undefined
    : undefined;
  const body = entry?.[field];
  if (!isFields(body)) throw new KubeConfigError(`${path}: no ${field} named "${name}"`);
  return body;
}

function str(fields: Fields, key: string): string | undefined {
  const value = fields[key];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function decodeBase64(value: string, field: string, path: string): string {
  try {
    return new TextDecoder().decode(Uint8Array.fromBase64(value.replace(/\s+/g, "")));
  } catch (error) {
    throw new KubeConfigError(`${path}: ${field} is not base64`, { cause: error });
  }
}

/**
 * Parses kubeconfig text: JSON, else YAML.
 *
 * @throws {KubeConfigError} when it is neither
 */
export async function parseKubeConfigText(
  text: string,
  path: string,
): Promise<Record<string, unknown>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    try {
      // @ts-types="@types/js-yaml"
      const yaml = await import("js-yaml");
      parsed = yaml.load(text);
    } catch (error) {
      throw new KubeConfigError(`${path}: not JSON or YAML: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  if (!isFields(parsed)) throw new KubeConfigError(`${path}: not a kubeconfig object`);
  return parsed;
}

/**
 * The {@link KubeConfig} of a kubeconfig file's current context (or `context`). Relative file
 * paths are taken from the kubeconfig's directory.
 *
 * @param path the kubeconfig file
 * @param context a context other than `current-context`
 * @throws {KubeConfigError} when the file is unreadable, the context, cluster or user is missing,
 *   or the user needs an `exec` or `auth-provider` plugin (not supported)
 */
export async function loadKubeConfigFile(path: string, context?: string): Promise<KubeConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new KubeConfigError(`cannot read kubeconfig ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const doc = await parseKubeConfigText(text, path);
  const contextName = context ?? str(doc, "current-context");
  if (contextName === undefined) throw new KubeConfigError(`${path}: no current-context`);
  const ctx = named(doc.contexts, contextName, "context", path);
  const clusterName = str(ctx, "cluster");
  if (clusterName === undefined) {
    throw new KubeConfigError(`${path}: context "${contextName}" names no cluster`);
  }
  const cluster = named(doc.clusters, clusterName, "cluster", path);
  const userName = str(ctx, "user");
  const user = userName === undefined ? {} : named(doc.users, userName, "user", path);
  const base = dirname(path);
  const file = async (field: string, fields: Fields): Promise<string | undefined> => {
    const value = str(fields, field);
    if (value === undefined) return undefined;
    const full = isAbsolute(value) ? value : join(base, value);
    try {
      return await Deno.readTextFile(full);
    } catch (error) {
      throw new KubeConfigError(
        `${path}: cannot read ${field} ${full}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  };
  const server = str(cluster, "server");
  if (server === undefined) {
    throw new KubeConfigError(`${path}: cluster "${clusterName}" has no server`);
  }
  if (cluster["proxy-url"] !== undefined) {
    throw new KubeConfigError(
      `${path}: clusters[${clusterName}].cluster.proxy-url is not supported; reach the API ` +
        `server directly`,
    );
  }
  for (const field of ["exec", "auth-provider"]) {
    if (user[field] !== undefined) {
      throw new KubeConfigError(
        `${path}: users[${userName}].user.${field} is not supported; use a token, a token file ` +
          `or a client certificate`,
      );
    }
  }
  if (user.username !== undefined || user.password !== undefined) {
    throw new KubeConfigError(
      `${path}: users[${userName}].user.username/password (basic auth) is not supported`,
    );
  }
  const caData = str(cluster, "certificate-authority-data");
  const certData = str(user, "client-certificate-data");
  const keyData = str(user, "client-key-data");
  const tokenFile = str(user, "tokenFile");
  const groups = user["as-groups"];
  const config: KubeConfig = {
    server: server.replace(/\/+$/, ""),
    caPem: caData !== undefined
      ? decodeBase64(caData, "certificate-authority-data", path)
      : await file("certificate-authority", cluster),
    insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"] === true,
    token: str(user, "token"),
    tokenFile: tokenFile === undefined || isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile),
    certPem: certData !== undefined
      ? decodeBase64(certData, "client-certificate-data", path)
      : await file("client-certificate", user),
    keyPem: keyData !== undefined
      ? decodeBase64(keyData, "client-key-data", path)
      : await file("client-key", user),
    impersonateUser: str(user, "as"),
    impersonateGroups: Array.isArray(groups) ? groups.map(String) : undefined,
  };
  if ((config.certPem === undefined) !== (config.keyPem === undefined)) {
    throw new KubeConfigError(
      `${path}: users[${userName}] has a client certificate without its key, or a key without ` +
        `its certificate`,
    );
  }
  return config;
}

/**
 * The settings the programs use: `kubeconfig` when given, else the in-cluster service account.
 *
 * @throws {KubeConfigError} when they cannot be read
 */
export function loadKubeConfig(kubeconfig: string | undefined): Promise<KubeConfig> {
  return kubeconfig ? loadKubeConfigFile(kubeconfig) : loadInClusterConfig();
}
