/**
 * The pod mutation as a pure function: which pods get the trust-store CSI volume, how their
 * annotations are read, and the JSONPatch that adds the volume, the read-only mounts and, on
 * request, the environment variables for runtimes that ignore the system store.
 *
 * @module
 */

import type { V1Container, V1EnvVar, V1Pod } from "@kubernetes/client-node";
import {
  ANNOTATION_PREFIX,
  ANNOTATIONS,
  DEFAULT_MOUNT_PATH,
  DEFAULT_OS_FAMILY,
  defaultMountPath,
  INJECT_LABEL,
  JKS_PASSWORD,
  type OsFamily,
  storeFiles,
  volumeAttributes,
} from "../api/mod.ts";
import { parseOsFamily, UnknownOsFamilyError } from "../trust_store/mod.ts";
import { ECHO_LIMIT, quoteValue } from "./quote.ts";

export { ANNOTATION_PREFIX, ANNOTATIONS, DEFAULT_MOUNT_PATH, INJECT_LABEL };

/** Name of the volume the webhook adds. */
export const VOLUME_NAME = "spire-cacerts";

/** What the mutation needs to know about its deployment. */
export interface MutationConfig {
  /** CSI driver name, normally `DRIVER_NAME` (`cacerts.csi.cert-manager.io`). */
  driverName: string;
  /** Per-namespace CAProviderClass the volume refers to, e.g. `spire-ca`. */
  className: string;
}

/**
 * One RFC 6902 operation as the webhook emits them. Every operation targets a path that exists
 * in the pod it was planned for: arrays and the `value` of an env entry are created or set with
 * `add`, so a strict applier accepts the patch as the API server's lenient one does.
 */
export type JsonPatchOperation =
  | { op: "add"; path: string; value: unknown }
  | { op: "replace"; path: string; value: unknown };

/** The outcome of {@link planMutation}. */
export interface MutationPlan {
  /** Operations to apply; empty when the pod stays as it is. */
  patch: JsonPatchOperation[];
  /** Admission warnings explaining why something was left alone. */
  warnings: string[];
}

/** Thrown for an annotation this webhook cannot honour; the pod is rejected with the message. */
export class InvalidAnnotationError extends Error {
  /** Creates the error with a message naming the annotation and what it accepts. */
  constructor(message: string) {
    super(message);
    this.name = "InvalidAnnotationError";
  }
}

/**
 * Escapes one JSON Pointer reference token (RFC 6901): `~` becomes `~0`, `/` becomes `~1`.
 */
export function escapePointerToken(token: string): string {
  return token.replaceAll("~", "~0").replaceAll("/", "~1");
}

function pointer(...tokens: (string | number)[]): string {
  return tokens.map((token) => "/" + escapePointerToken(String(token))).join("");
}

/** Whether a pod carries the injection label with value `"true"`. */
export function wantsInjection(pod: V1Pod): boolean {
  return pod.metadata?.labels?.[INJECT_LABEL] === "true";
}

/** The pod's annotations under {@link ANNOTATION_PREFIX}, checked. */
export interface PodOptions {
  /** False when the pod opted out. */
  inject: boolean;
  /** OS family, when the pod named one. */
  os?: OsFamily;
  /** Selected container names; undefined means every container and init container. */
  containers?: string[];
  /** Where the store is mounted. */
  mountPath: string;
  /** Whether to set the runtime environment variables. */
  env: boolean;
}

function parseBoolean(key: string, value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new InvalidAnnotationError(
    `annotation ${ANNOTATION_PREFIX}${key}: ${quoteValue(value)} is not "true" or "false"`,
  );
}

/**
 * An absolute path in its normal form: `/` runs collapsed, `.` dropped, `..` resolved (at the root
 * it stays there, as in POSIX), no trailing `/`; `//etc/ssl/certs`, `/etc/ssl/certs/` and
 * `/etc/x/../ssl/./certs` are all `/etc/ssl/certs`. A relative path is returned unchanged.
 */
export function normaliseMountPath(path: string): string {
  if (!path.startsWith("/")) return path;
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return "/" + parts.join("/");
}

/** Mount paths refused as they are: mounting the store there hides what the image needs. */
export const REFUSED_MOUNT_PATHS: readonly string[] = ["/", "/etc", "/run", "/var/run"];
/** Kernel and device filesystems the runtime mounts: refused, and every path beneath them. */
export const REFUSED_MOUNT_TREES: readonly string[] = ["/proc", "/sys", "/dev"];

function checkMountPath(value: string): string {
  const path = normaliseMountPath(value);
  const resolved = path.length <= ECHO_LIMIT ? path : quoteValue(path);
  const shown = path === value ? quoteValue(value) : `${quoteValue(value)} (${resolved})`;
  const bad = (why: string) =>
    new InvalidAnnotationError(
      `annotation ${ANNOTATION_PREFIX}${ANNOTATIONS.mountPath}: ${shown} ${why}`,
    );
  if (!value.startsWith("/")) throw bad("is not an absolute path");
  if (value.includes(":")) throw bad("contains ':'");
  if (REFUSED_MOUNT_PATHS.includes(path)) {
    throw bad(
      `is a system directory the store would hide; refused: ${
        REFUSED_MOUNT_PATHS.join(", ")
      } and anything under ${REFUSED_MOUNT_TREES.join(", ")}`,
    );
  }
  const tree = REFUSED_MOUNT_TREES.find((root) => path === root || path.startsWith(`${root}/`));
  if (tree !== undefined) {
    throw bad(
      `is ${
        path === tree ? "" : "under "
      }${tree}, a kernel filesystem the container runtime mounts; refused: ${
        REFUSED_MOUNT_PATHS.join(", ")
      } and anything under ${REFUSED_MOUNT_TREES.join(", ")}`,
    );
  }
  return path;
}

/**
 * Reads and checks the pod's annotations under {@link ANNOTATION_PREFIX}.
 *
 * @throws {InvalidAnnotationError} for an unknown key, a bad value, or a container that does not exist
 */
export function readPodOptions(pod: V1Pod): PodOptions {
  const annotations = pod.metadata?.annotations ?? {};
  const known = new Set<string>(Object.values(ANNOTATIONS));
  const get = (key: string) => annotations[ANNOTATION_PREFIX + key];
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(ANNOTATION_PREFIX)) continue;
    const name = key.slice(ANNOTATION_PREFIX.length);
    if (!known.has(name)) {
      throw new InvalidAnnotationError(
        `unknown annotation ${quoteValue(key)}; known: ${
          [...known].map((k) => ANNOTATION_PREFIX + k).join(", ")
        }`,
      );
    }
  }
  const injectValue = get(ANNOTATIONS.inject);
  const inject = injectValue === undefined ? true : parseBoolean(ANNOTATIONS.inject, injectValue);
  const envValue = get(ANNOTATIONS.env);
  const env = envValue === undefined ? false : parseBoolean(ANNOTATIONS.env, envValue);

  let os: OsFamily | undefined;
  const osValue = get(ANNOTATIONS.os);
  if (osValue !== undefined) {
    try {
      os = parseOsFamily(osValue);
    } catch (error) {
      if (!(error instanceof UnknownOsFamilyError)) throw error;
      throw new InvalidAnnotationError(
        `annotation ${ANNOTATION_PREFIX}${ANNOTATIONS.os}: unknown OS family ${
          quoteValue(osValue)
        }; valid values: ${error.valid.join(", ")}`,
      );
    }
  }

  let containers: string[] | undefined;
  const containersValue = get(ANNOTATIONS.containers);
  if (containersValue !== undefined) {
    containers = containersValue.split(",").map((name) => name.trim()).filter((name) =>
      name !== ""
    );
    const key = ANNOTATION_PREFIX + ANNOTATIONS.containers;
    if (containers.length === 0) {
      throw new InvalidAnnotationError(`annotation ${key} names no container`);
    }
    const present = new Set(
      [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].map((c) => c.name),
    );
    const missing = containers.filter((name) => !present.has(name));
    if (missing.length > 0) {
      throw new InvalidAnnotationError(
        `annotation ${key}: no container or init container named ${
          missing.slice(0, 10).map(quoteValue).join(", ")
        }${missing.length > 10 ? ` and ${missing.length - 10} more` : ""} ` +
          `(pod has ${[...present].join(", ") || "none"})`,
      );
    }
  }

  const pathValue = get(ANNOTATIONS.mountPath);
  const mountPath = pathValue !== undefined
    ? checkMountPath(pathValue)
    : os !== undefined
    ? defaultMountPath(os)
    : DEFAULT_MOUNT_PATH;
  return { inject, os, containers, mountPath, env };
}

/** Environment variables for runtimes that do not read the system store. */
function envVars(mountPath: string, family: OsFamily): V1EnvVar[] {
  const files = storeFiles(family);
  const at = (relative: string) => relative === "" ? mountPath : `${mountPath}/${relative}`;
  return [
    { name: "SSL_CERT_FILE", value: at(files.bundle) },
    { name: "SSL_CERT_DIR", value: at(files.hashDir) },
    { name: "NODE_EXTRA_CA_CERTS", value: at(files.bundle) },
    { name: "REQUESTS_CA_BUNDLE", value: at(files.bundle) },
    { name: "JAVA_TOOL_OPTIONS", value: javaOptions(at(files.java)) },
  ];
}

function javaOptions(keyStore: string): string {
  return `-Djavax.net.ssl.trustStore=${keyStore} -Djavax.net.ssl.trustStorePassword=${JKS_PASSWORD}`;
}

function envPatch(
  container: V1Container,
  base: string[],
  wanted: V1EnvVar[],
  warnings: string[],
): JsonPatchOperation[] {
  const existing = container.env;
  if (!Array.isArray(existing) || existing.length === 0) {
    return [{ op: "add", path: pointer(...base, "env"), value: wanted }];
  }
  const ops: JsonPatchOperation[] = [];
  for (const variable of wanted) {
    const index = existing.findIndex((e) => e.name === variable.name);
    if (index === -1) {
      ops.push({ op: "add", path: pointer(...base, "env", "-"), value: variable });
      continue;
    }
    const current = existing[index];
    if (variable.name === "JAVA_TOOL_OPTIONS" && current.valueFrom === undefined) {
      const before = current.value ?? "";
      if (before.includes("-Djavax.net.ssl.trustStore=")) {
        warnings.push(
          `container ${container.name}: JAVA_TOOL_OPTIONS already sets a trust store; left as is`,
        );
      } else {
        // `add`, not `replace`: an empty value arrives without its `value` member (omitempty),
        // and RFC 6902 `replace` needs the member to exist; `add` sets or replaces it.
        ops.push({
          op: "add",
          path: pointer(...base, "env", index, "value"),
          value: before === "" ? variable.value : `${before} ${variable.value}`,
        });
      }
      continue;
    }
    warnings.push(`container ${container.name}: ${variable.name} is already set; left as is`);
  }
  return ops;
}

/** Whether two mount paths name the same directory once normalised ({@link normaliseMountPath}). */
function samePath(a: string, b: string): boolean {
  return normaliseMountPath(a) === normaliseMountPath(b);
}

/**
 * Plans the mutation of a pod being created. Pure: the same pod and config give the same plan.
 *
 * A pod without the label, or opted out, gets an empty plan. A pod that has a volume of the CSI
 * driver under another name, or a volume named {@link VOLUME_NAME} that is not the driver's, is
 * left as it is, with a warning. On the first invocation, a selected container that already
 * mounts something at the chosen path leaves the whole pod as it is, with a warning.
 *
 * A pod that already has the webhook's own volume was mutated before and is being reinvoked
 * (`reinvocationPolicy: IfNeeded`, after another webhook changed it): each selected container
 * that does not mount the volume yet gets the mount (and the environment, when asked for), a
 * container that mounts another volume at the path is skipped with a warning, and a container
 * that already mounts the volume is left alone silently. A fully mutated pod therefore gets an
 * empty plan without warnings: the mutation is idempotent.
 *
 * @throws {InvalidAnnotationError} when the pod's annotations are not valid
 */
export function planMutation(pod: V1Pod, config: MutationConfig): MutationPlan {
  if (!wantsInjection(pod)) return { patch: [], warnings: [] };
  const options = readPodOptions(pod);
  if (!options.inject) return { patch: [], warnings: [] };
  const spec = pod.spec;
  if (spec === undefined) return { patch: [], warnings: ["pod has no spec; left as is"] };

  const volumes = spec.volumes ?? [];
  const named = volumes.find((v) => v.name === VOLUME_NAME);
  const ours = named !== undefined && named.csi?.driver === config.driverName;
  const foreign = named ?? volumes.find((v) => v.csi?.driver === config.driverName);
  if (!ours && foreign !== undefined) {
    return {
      patch: [],
      warnings: [
        `pod already has volume ${foreign.name} (CSI driver ${
          foreign.csi?.driver ?? "none"
        }); trust store left as is`,
      ],
    };
  }

  const groups = [
    { field: "initContainers", list: spec.initContainers ?? [] },
    { field: "containers", list: spec.containers ?? [] },
  ] as const;
  const selected = (c: V1Container) =>
    options.containers === undefined || options.containers.includes(c.name);
  const clashOf = (container: V1Container) =>
    container.volumeMounts?.find((m) =>
      m.name !== VOLUME_NAME && samePath(m.mountPath, options.mountPath)
    );
  if (!ours) {
    for (const { list } of groups) {
      for (const container of list) {
        const clash = selected(container) ? clashOf(container) : undefined;
        if (clash !== undefined) {
          return {
            patch: [],
            warnings: [
              `container ${container.name} already mounts volume ${clash.name} at ` +
              `${options.mountPath}; trust store left as is`,
            ],
          };
        }
      }
    }
  }

  const family = options.os ?? DEFAULT_OS_FAMILY;
  const patch: JsonPatchOperation[] = [];
  if (!ours) {
    const volume = {
      name: VOLUME_NAME,
      csi: {
        driver: config.driverName,
        readOnly: true,
        volumeAttributes: volumeAttributes(family, config.className),
      },
    };
    patch.push(
      !Array.isArray(spec.volumes)
        ? { op: "add", path: pointer("spec", "volumes"), value: [volume] }
        : { op: "add", path: pointer("spec", "volumes", "-"), value: volume },
    );
  }
  const warnings: string[] = [];
  const mount = { name: VOLUME_NAME, mountPath: options.mountPath, readOnly: true };
  const wanted = options.env ? envVars(options.mountPath, family) : [];
  for (const { field, list } of groups) {
    list.forEach((container, index) => {
      if (!selected(container)) return;
      if (ours) {
        // Reinvoked: only containers added since the first invocation lack the mount.
        if (container.volumeMounts?.some((m) => m.name === VOLUME_NAME)) return;
        const clash = clashOf(container);
        if (clash !== undefined) {
          warnings.push(
            `container ${container.name} already mounts volume ${clash.name} at ` +
              `${options.mountPath}; trust store not mounted in it`,
          );
          return;
        }
      }
      const base = ["spec", field, String(index)];
      patch.push(
        !Array.isArray(container.volumeMounts)
          ? { op: "add", path: pointer(...base, "volumeMounts"), value: [mount] }
          : { op: "add", path: pointer(...base, "volumeMounts", "-"), value: mount },
      );
      if (wanted.length > 0) patch.push(...envPatch(container, base, wanted, warnings));
    });
  }
  return { patch, warnings };
}
