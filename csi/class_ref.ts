/**
 * Parsing of the `caProviderClasses` volume attribute and of CAProviderClass objects
 * (`cacerts.csi.cert-manager.io/v1alpha1`, the kubeops/csi-driver-cacerts schema:
 * `spec.refs[]` of `{apiGroup, kind, namespace, name, key}`).
 *
 * @module
 */

import { status } from "@grpc/grpc-js";
import { SourceError } from "./errors.ts";

/** API group of CAProviderClass. */
export const CLASS_GROUP = "cacerts.csi.cert-manager.io";
/** API version of CAProviderClass. */
export const CLASS_VERSION = "v1alpha1";
/** Plural resource name of CAProviderClass. */
export const CLASS_PLURAL = "caproviderclasses";
/** Key read from a Secret or ConfigMap when a ref names none (as in cert-manager and kube-root-ca.crt). */
export const DEFAULT_KEY = "ca.crt";

/** A namespaced object name. */
export interface ObjectName {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
}

/** Kinds a ref may point at. */
export type SourceKind = "Secret" | "ConfigMap";

/** A resolved reference to one key of a Secret or ConfigMap. */
export interface SourceRef extends ObjectName {
  /** Secret or ConfigMap. */
  kind: SourceKind;
  /** Key inside `data`. */
  key: string;
  /** Whether the key was defaulted to {@link DEFAULT_KEY}. */
  defaultedKey: boolean;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Parses the `caProviderClasses` attribute: names or `namespace/name`, separated by commas and/or
 * whitespace. A bare name lives in `defaultNamespace` (the pod's). Duplicates are dropped.
 *
 * @throws {Error} naming the bad entry when a name or namespace is not a valid Kubernetes name
 */
export function parseClassList(value: string, defaultNamespace: string): ObjectName[] {
  const out: ObjectName[] = [];
  const seen = new Set<string>();
  for (const entry of value.split(/[\s,]+/).filter((s) => s !== "")) {
    const parts = entry.split("/");
    if (parts.length > 2) throw new Error(`"${entry}" is neither a name nor namespace/name`);
    const [namespace, name] = parts.length === 2 ? parts : [defaultNamespace, parts[0]];
    if (!DNS_LABEL.test(namespace)) {
      throw new Error(`"${entry}": "${namespace}" is not a valid namespace name`);
    }
    if (!DNS_SUBDOMAIN.test(name)) {
      throw new Error(`"${entry}": "${name}" is not a valid object name`);
    }
    const id = `${namespace}/${name}`;
    if (!seen.has(id)) {
      seen.add(id);
      out.push({ namespace, name });
    }
  }
  if (out.length === 0) throw new Error("no class named");
  return out;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * Reads the refs of a CAProviderClass object. Refs without a namespace live in the class's
 * namespace; refs without a key read {@link DEFAULT_KEY}. Only core Secrets and ConfigMaps are
 * supported.
 *
 * @param object the object as returned by the API server
 * @param where `namespace/name` of the class, for messages
 * @throws {SourceError} naming the class and the ref index when a ref is unusable
 */
export function parseClassRefs(object: unknown, where: ObjectName): SourceRef[] {
  const label = `CAProviderClass ${where.namespace}/${where.name}`;
  const spec = (object as { spec?: { refs?: unknown } } | null)?.spec;
  const refs = spec?.refs;
  if (!Array.isArray(refs) || refs.length === 0) {
    throw new SourceError(`${label} has no spec.refs`, status.FAILED_PRECONDITION);
  }
  return refs.map((raw, i) => {
    const ref = (raw ?? {}) as Record<string, unknown>;
    const at = `${label} spec.refs[${i}]`;
    const apiGroup = str(ref.apiGroup) ?? "";
    const kind = str(ref.kind);
    if (apiGroup !== "" && apiGroup !== "core" && apiGroup !== "v1") {
      throw new SourceError(`${at}: apiGroup "${apiGroup}" is not supported (use "" for core)`);
    }
    if (kind !== "Secret" && kind !== "ConfigMap") {
      throw new SourceError(`${at}: kind "${kind ?? ""}" is not supported (Secret or ConfigMap)`);
    }
    const name = str(ref.name);
    if (!name || !DNS_SUBDOMAIN.test(name)) {
      throw new SourceError(`${at}: name "${name ?? ""}" is missing or invalid`);
    }
    const namespace = str(ref.namespace) ?? where.namespace;
    if (!DNS_LABEL.test(namespace)) {
      throw new SourceError(`${at}: namespace "${namespace}" is invalid`);
    }
    const key = str(ref.key);
    return { kind, namespace, name, key: key ?? DEFAULT_KEY, defaultedKey: key === undefined };
  });
}
