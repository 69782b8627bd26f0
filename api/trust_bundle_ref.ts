/**
 * CAProviderClass refs of kind `ClusterTrustBundle` (`certificates.k8s.io/v1`, cluster-scoped,
 * `spec.trustBundle` a PEM string of CA certificates): the ref's shape, its parser
 * ({@link parseTrustBundleRef}, which `parseClassRefs` calls for that kind), the label selector
 * written as a list selector ({@link labelSelectorText}), and the PEM of the selected bundles
 * ({@link readTrustBundles}).
 *
 * A ref selects bundles as the kubelet's `clusterTrustBundle` projection does: by `name`, or by
 * `signerName` with an optional `labelSelector` (the union of every matching bundle, in name
 * order); `name` and `signerName` exclude each other. One difference: a signer ref without
 * `labelSelector` selects every bundle of that signer (the kubelet's projection selects none).
 *
 * @module
 */

import { TRUST_BUNDLE_KIND } from "./contract.ts";
import { SourceError } from "./errors.ts";

/** A parsed ref to one ClusterTrustBundle by name, or to the bundles of a signer. */
export interface TrustBundleRef {
  /** `ClusterTrustBundle`. */
  kind: typeof TRUST_BUNDLE_KIND;
  /** The bundle's name; undefined for a signer ref. */
  name: string | undefined;
  /** The signer whose bundles are selected; undefined for a ref by name. */
  signerName: string | undefined;
  /**
   * The ref's `labelSelector` as a list selector (`team=a,tier in (x,y)`): `""` selects every
   * bundle of the signer; undefined when the ref has none (also every bundle) or is by name.
   */
  labelSelector: string | undefined;
  /** Position in `spec.refs`, for messages. */
  index: number;
}

/** A PEM text read from one ClusterTrustBundle. */
export interface TrustBundleText {
  /** `ClusterTrustBundle <name>`. */
  name: string;
  /** `spec.trustBundle`. */
  text: string;
}

/** A bundle name: a DNS subdomain, with `:` allowed (signer bundles are `<signer>:<name>`). */
const BUNDLE_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$/;
/** A qualified label key: optional DNS subdomain prefix, then a name of at most 63 characters. */
const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(|(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
/** `<DNS subdomain>/<path>`, the form the API server requires of `spec.signerName`. */
const SIGNER_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[^\s/][^\s]*$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * Writes a `metav1.LabelSelector` (`matchLabels`, `matchExpressions` with `In`, `NotIn`, `Exists`,
 * `DoesNotExist`) as the selector string a list takes, terms sorted. `{}` gives `""`, which
 * selects everything.
 *
 * @param selector the ref's `labelSelector`
 * @param at where it is, for messages (e.g. `CAProviderClass shop/ca spec.refs[0].labelSelector`)
 * @throws {SourceError} (`InvalidRef`) naming the field when a key, value or operator is invalid
 */
export function labelSelectorText(selector: unknown, at: string): string {
  if (!isRecord(selector)) throw new SourceError(`${at} must be an object`);
  const terms: string[] = [];
  const key = (k: unknown, where: string): string => {
    if (typeof k !== "string" || !LABEL_KEY.test(k)) {
      throw new SourceError(`${where}: "${String(k)}" is not a valid label key`);
    }
    return k;
  };
  const value = (v: unknown, where: string): string => {
    if (typeof v !== "string" || !LABEL_VALUE.test(v)) {
      throw new SourceError(`${where}: "${String(v)}" is not a valid label value`);
    }
    return v;
  };
  const labels = selector.matchLabels ?? {};
  if (!isRecord(labels)) throw new SourceError(`${at}.matchLabels must be a map of labels`);
  for (const [k, v] of Object.entries(labels)) {
    terms.push(`${key(k, `${at}.matchLabels`)}=${value(v, `${at}.matchLabels.${k}`)}`);
  }
  const expressions = selector.matchExpressions ?? [];
  if (!Array.isArray(expressions)) {
    throw new SourceError(`${at}.matchExpressions must be a list`);
  }
  expressions.forEach((raw: unknown, i) => {
    const where = `${at}.matchExpressions[${i}]`;
    const e = isRecord(raw) ? raw : {};
    const k = key(e.key, `${where}.key`);
    const values = e.values ?? [];
    if (!Array.isArray(values)) throw new SourceError(`${where}.values must be a list`);
    const vs = values.map((v: unknown, j) => value(v, `${where}.values[${j}]`)).sort();
    switch (e.operator) {
      case "In":
      case "NotIn":
        if (vs.length === 0) {
          throw new SourceError(`${where}: operator ${e.operator} needs at least one value`);
        }
        terms.push(`${k} ${e.operator === "In" ? "in" : "notin"} (${vs.join(",")})`);
        break;
      case "Exists":
      case "DoesNotExist":
        if (vs.length > 0) {
          throw new SourceError(`${where}: operator ${e.operator} takes no values; remove them`);
        }
        terms.push(e.operator === "Exists" ? k : `!${k}`);
        break;
      default:
        throw new SourceError(
          `${where}.operator "${String(e.operator ?? "")}" is not one of In, NotIn, Exists, ` +
            `DoesNotExist`,
        );
    }
  });
  return terms.sort().join(",");
}

/**
 * Reads one `spec.refs` entry of kind `ClusterTrustBundle` (its `apiGroup` already checked).
 *
 * @param ref the raw entry
 * @param at where it is, e.g. `CAProviderClass shop/ca spec.refs[2]`
 * @param index its position in `spec.refs`
 * @throws {SourceError} (`InvalidRef`) naming the field and the fix: neither or both of `name`
 *   and `signerName`, a `namespace` or `key` (a bundle is cluster-scoped and has one PEM field),
 *   a `labelSelector` without `signerName`, or an invalid name, signer or selector
 */
export function parseTrustBundleRef(
  ref: Record<string, unknown>,
  at: string,
  index: number,
): TrustBundleRef {
  const name = str(ref.name);
  const signerName = str(ref.signerName);
  if (str(ref.namespace) !== undefined) {
    throw new SourceError(
      `${at}: a ClusterTrustBundle is cluster-scoped; remove namespace "${ref.namespace}"`,
    );
  }
  if (str(ref.key) !== undefined) {
    throw new SourceError(
      `${at}: a ClusterTrustBundle holds its certificates in spec.trustBundle; remove key ` +
        `"${ref.key}"`,
    );
  }
  if ((name === undefined) === (signerName === undefined)) {
    throw new SourceError(
      `${at}: a ClusterTrustBundle ref needs exactly one of name (one bundle) and signerName ` +
        `(every bundle of that signer)`,
    );
  }
  if (name !== undefined) {
    if (!BUNDLE_NAME.test(name)) {
      throw new SourceError(`${at}: name "${name}" is not a valid ClusterTrustBundle name`);
    }
    if (ref.labelSelector !== undefined && ref.labelSelector !== null) {
      throw new SourceError(
        `${at}: labelSelector applies to a signerName ref only; remove it or replace name by ` +
          `signerName`,
      );
    }
    return {
      kind: TRUST_BUNDLE_KIND,
      name,
      signerName: undefined,
      labelSelector: undefined,
      index,
    };
  }
  if (!SIGNER_NAME.test(signerName!)) {
    throw new SourceError(
      `${at}: signerName "${signerName}" is not of the form <domain>/<path> (e.g. ` +
        `example.com/my-signer)`,
    );
  }
  const labelSelector = ref.labelSelector === undefined || ref.labelSelector === null
    ? undefined
    : labelSelectorText(ref.labelSelector, `${at}.labelSelector`);
  return { kind: TRUST_BUNDLE_KIND, name: undefined, signerName, labelSelector, index };
}

/** `ClusterTrustBundle <name>`, or `ClusterTrustBundles of signer <s> (labels <sel>)`. */
export function trustBundleRefName(ref: TrustBundleRef): string {
  if (ref.name !== undefined) return `${TRUST_BUNDLE_KIND} ${ref.name}`;
  const labels = ref.labelSelector ? ` matching labels "${ref.labelSelector}"` : "";
  return `${TRUST_BUNDLE_KIND}s of signer ${ref.signerName}${labels}`;
}

/**
 * The PEM of the bundles a ref selects, one text per bundle in name order.
 *
 * @param ref the parsed ref
 * @param bundles the bundle (by name: one, or none when it does not exist) or the bundles listed
 *   with the ref's signer and label selector
 * @param from where the ref comes from, for messages (e.g. `CAProviderClass shop/ca`)
 * @throws {SourceError} `SourceNotFound` when no bundle is selected, `InvalidRef` when a bundle
 *   has no `spec.trustBundle`
 */
export function readTrustBundles(
  ref: TrustBundleRef,
  bundles: readonly Record<string, unknown>[],
  from?: string,
): TrustBundleText[] {
  const what = `${trustBundleRefName(ref)}${from ? ` (from ${from})` : ""}`;
  const named = bundles.map((bundle) => {
    const metadata = isRecord(bundle.metadata) ? bundle.metadata : {};
    return { bundle, name: typeof metadata.name === "string" ? metadata.name : "" };
  }).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  if (named.length === 0) {
    throw new SourceError(
      ref.name !== undefined
        ? `${what} not found`
        : `${what}: no ClusterTrustBundle has spec.signerName ${ref.signerName}` +
          (ref.labelSelector ? ` and labels matching "${ref.labelSelector}"` : "") +
          `; create one, or fix spec.refs[${ref.index}]`,
      { reason: "SourceNotFound" },
    );
  }
  return named.map(({ bundle, name }) => {
    const text = isRecord(bundle.spec) ? bundle.spec.trustBundle : undefined;
    if (typeof text !== "string" || text === "") {
      throw new SourceError(
        `${TRUST_BUNDLE_KIND} ${name}${from ? ` (from ${from})` : ""} has no spec.trustBundle`,
      );
    }
    return { name: `${TRUST_BUNDLE_KIND} ${name}`, text };
  });
}
