/**
 * Rules the rendered deployment (`kubectl kustomize manifests`) must follow: pinned images,
 * resources, probes, security contexts, selectors that match their templates, references that
 * resolve, and the admission-webhook and SPIRE settings the product depends on.
 *
 * ```ts
 * import { checkManifests } from "./manifest_rules.ts";
 * const problems = checkManifests(objects, { ownImageTag: "0.1.0" });
 * if (problems.length > 0) throw new Error(problems.join("\n"));
 * ```
 *
 * @module
 */

import { INJECT_LABEL } from "../api/mod.ts";
import {
  CLUSTER_SPIFFE_ID_GROUP,
  CLUSTER_SPIFFE_ID_KIND,
  CLUSTER_SPIFFE_ID_PLURAL,
  parseRegistrations,
  RegistrationFileError,
} from "../webhook/registrations.ts";

/** A Kubernetes object as parsed from YAML or JSON. */
export type KubeObject = Record<string, unknown>;

/** Options for {@link checkManifests}. */
export interface ManifestRuleOptions {
  /** Tag every `ghcr.io/spire-cacerts/*` image must carry (the version in deno.json). */
  ownImageTag: string;
}

/** Pod-template annotation naming containers that intentionally have no probes (comma list). */
export const PROBE_EXEMPT_ANNOTATION = "spire-cacerts.io/probe-exempt";

/** Label SPIRE's k8sbundle notifier (`webhook_label`) looks for on webhook configurations. */
export const WEBHOOK_LABEL = "spiffe.io/webhook";

/** Pod label that asks for trust-store injection (the contract's, from api/). */
export { INJECT_LABEL };

/** Namespaces the webhook must never act in. */
export const EXCLUDED_NAMESPACES: readonly string[] = ["kube-system", "spire", "spire-cacerts"];

/** ConfigMap (namespace `spire-cacerts`) holding the ClusterSPIFFEIDs the webhook applies. */
export const REGISTRATIONS_CONFIGMAP = "spire-cacerts-webhook-registrations";

/** Containers that must run as root, with the reason. Everything else runs as non-root. */
export const ROOT_CONTAINERS: Readonly<Record<string, string>> = {
  "spire-agent/spire-agent": "reads other users' /proc entries for workload attestation",
  "spire-cacerts-csi/csi-driver": "mounts tmpfs into pod directories (privileged)",
  "spire-cacerts-csi/node-driver-registrar": "writes its socket into kubelet's plugin registry",
  "spire-cacerts-csi/liveness-probe": "connects to the root-owned CSI socket",
};

const WORKLOAD_KINDS = new Set(["Deployment", "StatefulSet", "DaemonSet"]);
const OWN_IMAGE_PREFIX = "ghcr.io/spire-cacerts/";

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads `path` (dot-separated) from a nested object; undefined when any step is missing. */
function get(value: unknown, path: string): unknown {
  let current = value;
  for (const step of path.split(".")) {
    if (!isRecord(current)) return undefined;
    current = current[step];
  }
  return current;
}

function records(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter(isRecord) : [];
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(value)) return out;
  for (const [k, v] of Object.entries(value)) if (typeof v === "string") out[k] = v;
  return out;
}

function id(o: KubeObject): string {
  const ns = get(o, "metadata.namespace");
  return `${o.kind} ${typeof ns === "string" ? ns + "/" : ""}${get(o, "metadata.name")}`;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/** Splits an image reference into repository and tag (or digest). */
export function parseImage(image: string): { repository: string; tag?: string; digest?: string } {
  const at = image.indexOf("@");
  if (at >= 0) return { repository: image.slice(0, at), digest: image.slice(at + 1) };
  const slash = image.lastIndexOf("/");
  const colon = image.lastIndexOf(":");
  if (colon > slash) return { repository: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { repository: image };
}

interface PodContext {
  owner: string;
  /** Volume names a StatefulSet adds through volumeClaimTemplates. */
  claims: string[];
  name: string;
  namespace: string;
  template: Record<string, unknown>;
}

function podTemplates(objects: KubeObject[]): PodContext[] {
  return objects.filter((o) => WORKLOAD_KINDS.has(String(o.kind))).map((o) => ({
    owner: id(o),
    claims: records(get(o, "spec.volumeClaimTemplates")).map((t) =>
      String(get(t, "metadata.name"))
    ),
    name: String(get(o, "metadata.name")),
    namespace: String(get(o, "metadata.namespace")),
    template: isRecord(get(o, "spec.template")) ? get(o, "spec.template") as KubeObject : {},
  }));
}

function checkContainers(pod: PodContext, ownTag: string, problems: string[]): void {
  const spec = get(pod.template, "spec");
  const podSc = get(spec, "securityContext");
  const exempt = (stringMap(get(pod.template, "metadata.annotations"))[PROBE_EXEMPT_ANNOTATION] ??
    "").split(",").map((s) => s.trim()).filter(Boolean);
  const volumes = new Set([
    ...records(get(spec, "volumes")).map((v) => String(v.name)),
    ...pod.claims,
  ]);
  const groups: [string, Record<string, unknown>[]][] = [
    ["initContainers", records(get(spec, "initContainers"))],
    ["containers", records(get(spec, "containers"))],
  ];
  for (const [group, containers] of groups) {
    for (const c of containers) {
      const where = `${pod.owner} ${group.slice(0, -1)} ${c.name}`;
      const key = `${pod.name}/${c.name}`;
      const image = String(c.image ?? "");
      const ref = parseImage(image);
      if (!ref.tag && !ref.digest) problems.push(`${where}: image ${image} is not pinned`);
      if (ref.tag === "latest") problems.push(`${where}: image ${image} uses :latest`);
      if (image.startsWith(OWN_IMAGE_PREFIX) && ref.tag !== ownTag) {
        problems.push(`${where}: image ${image} must carry the project version ${ownTag}`);
      }
      for (const r of ["requests.cpu", "requests.memory", "limits.memory"]) {
        if (get(c.resources, r) === undefined) problems.push(`${where}: resources.${r} not set`);
      }
      const ports = new Set(records(c.ports).map((p) => p.name).filter((n) => n !== undefined));
      if (group === "containers" && !exempt.includes(String(c.name))) {
        for (const probe of ["livenessProbe", "readinessProbe"]) {
          if (!isRecord(c[probe])) problems.push(`${where}: ${probe} missing`);
        }
      }
      if (group === "initContainers" && (c.livenessProbe || c.readinessProbe)) {
        problems.push(`${where}: init containers cannot have liveness/readiness probes`);
      }
      for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
        const port = get(c[probe], "httpGet.port") ?? get(c[probe], "tcpSocket.port");
        if (typeof port === "string" && !ports.has(port)) {
          problems.push(
            `${where}: ${probe} names port ${port}, which this container does not declare`,
          );
        }
      }
      for (const m of records(c.volumeMounts)) {
        if (!volumes.has(String(m.name))) {
          problems.push(`${where}: mounts unknown volume ${m.name}`);
        }
      }
      const sc = isRecord(c.securityContext) ? c.securityContext : {};
      const privileged = sc.privileged === true;
      if (privileged && key !== "spire-cacerts-csi/csi-driver") {
        problems.push(`${where}: privileged is allowed only for the CSI driver`);
      }
      if (!privileged && sc.allowPrivilegeEscalation !== false) {
        problems.push(`${where}: allowPrivilegeEscalation must be false`);
      }
      if (sc.readOnlyRootFilesystem !== true) {
        problems.push(`${where}: readOnlyRootFilesystem must be true`);
      }
      const runAsUser = sc.runAsUser ?? get(podSc, "runAsUser");
      const runAsNonRoot = sc.runAsNonRoot ?? get(podSc, "runAsNonRoot");
      if (key in ROOT_CONTAINERS) {
        if (runAsUser !== 0) problems.push(`${where}: expected to run as root explicitly`);
      } else if (runAsNonRoot !== true || typeof runAsUser !== "number" || runAsUser === 0) {
        problems.push(`${where}: must run as a non-root numeric user (runAsNonRoot + runAsUser)`);
      }
    }
  }
  for (const e of exempt) {
    if (!records(get(spec, "containers")).some((c) => c.name === e)) {
      problems.push(`${pod.owner}: ${PROBE_EXEMPT_ANNOTATION} names unknown container ${e}`);
    }
  }
}

function checkReferences(objects: KubeObject[], pods: PodContext[], problems: string[]): void {
  const names = new Set(
    objects.map((o) =>
      `${o.kind}/${get(o, "metadata.namespace") ?? ""}/${get(o, "metadata.name")}`
    ),
  );
  for (const pod of pods) {
    for (const v of records(get(pod.template, "spec.volumes"))) {
      const cm = get(v, "configMap.name");
      if (typeof cm === "string" && !names.has(`ConfigMap/${pod.namespace}/${cm}`)) {
        problems.push(`${pod.owner}: volume ${v.name} references missing ConfigMap ${cm}`);
      }
    }
    const sa = get(pod.template, "spec.serviceAccountName");
    if (typeof sa === "string" && !names.has(`ServiceAccount/${pod.namespace}/${sa}`)) {
      problems.push(`${pod.owner}: service account ${sa} is not defined`);
    }
  }
  for (const o of objects) {
    if (o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding") {
      const roleKind = String(get(o, "roleRef.kind"));
      const ns = roleKind === "Role" ? String(get(o, "metadata.namespace")) : "";
      if (!names.has(`${roleKind}/${ns}/${get(o, "roleRef.name")}`)) {
        problems.push(`${id(o)}: roleRef ${roleKind} ${get(o, "roleRef.name")} is not defined`);
      }
      for (const s of records(o.subjects)) {
        if (s.kind === "ServiceAccount" && !names.has(`ServiceAccount/${s.namespace}/${s.name}`)) {
          problems.push(`${id(o)}: subject ServiceAccount ${s.namespace}/${s.name} is not defined`);
        }
      }
    }
  }
}

function checkSelectors(objects: KubeObject[], pods: PodContext[], problems: string[]): void {
  for (const o of objects.filter((o) => WORKLOAD_KINDS.has(String(o.kind)))) {
    const selector = stringMap(get(o, "spec.selector.matchLabels"));
    const labels = stringMap(get(o, "spec.template.metadata.labels"));
    if (!matches(selector, labels)) {
      problems.push(`${id(o)}: selector ${JSON.stringify(selector)} does not match its template`);
    }
  }
  const inNamespace = (ns: unknown) => pods.filter((p) => p.namespace === ns);
  for (const svc of objects.filter((o) => o.kind === "Service")) {
    const selector = stringMap(get(svc, "spec.selector"));
    const targets = inNamespace(get(svc, "metadata.namespace")).filter((p) =>
      matches(selector, stringMap(get(p.template, "metadata.labels")))
    );
    if (targets.length === 0) {
      problems.push(`${id(svc)}: selector ${JSON.stringify(selector)} matches no pod template`);
      continue;
    }
    for (const port of records(get(svc, "spec.ports"))) {
      if (typeof port.targetPort !== "string") continue;
      const found = targets.some((t) =>
        records(get(t.template, "spec.containers")).some((c) =>
          records(c.ports).some((p) => p.name === port.targetPort)
        )
      );
      if (!found) {
        problems.push(`${id(svc)}: targetPort ${port.targetPort} is not a container port`);
      }
    }
  }
  for (const pdb of objects.filter((o) => o.kind === "PodDisruptionBudget")) {
    const selector = stringMap(get(pdb, "spec.selector.matchLabels"));
    const hit = inNamespace(get(pdb, "metadata.namespace")).some((p) =>
      matches(selector, stringMap(get(p.template, "metadata.labels")))
    );
    if (!hit) problems.push(`${id(pdb)}: selector matches no pod template`);
  }
}

function checkWebhook(objects: KubeObject[], pods: PodContext[], problems: string[]): void {
  const configs = objects.filter((o) => o.kind === "MutatingWebhookConfiguration");
  if (configs.length !== 1) {
    problems.push(`expected one MutatingWebhookConfiguration, found ${configs.length}`);
    return;
  }
  const config = configs[0];
  if (stringMap(get(config, "metadata.labels"))[WEBHOOK_LABEL] !== "true") {
    problems.push(`${id(config)}: needs label ${WEBHOOK_LABEL}: "true" for SPIRE's notifier`);
  }
  const webhookPod = pods.find((p) => p.name === "spire-cacerts-webhook");
  const excludedFlag = records(get(webhookPod?.template, "spec.containers"))
    .flatMap((c) => strings(c.args))
    .find((a) => a.startsWith("--excluded-namespaces="));
  for (const hook of records(get(config, "webhooks"))) {
    const where = `${id(config)} webhook ${hook.name}`;
    if (get(hook, "clientConfig.caBundle") !== undefined) {
      problems.push(`${where}: caBundle must not be in the manifest (SPIRE's notifier owns it)`);
    }
    if (hook.sideEffects !== "None") problems.push(`${where}: sideEffects must be None`);
    if (hook.reinvocationPolicy !== "IfNeeded") {
      problems.push(`${where}: reinvocationPolicy must be IfNeeded`);
    }
    if (JSON.stringify(hook.admissionReviewVersions) !== '["v1"]') {
      problems.push(`${where}: admissionReviewVersions must be [v1]`);
    }
    if (hook.failurePolicy !== "Fail" && hook.failurePolicy !== "Ignore") {
      problems.push(`${where}: failurePolicy must be set deliberately`);
    }
    if (stringMap(get(hook, "objectSelector.matchLabels"))[INJECT_LABEL] !== "true") {
      problems.push(`${where}: objectSelector must select ${INJECT_LABEL}: "true"`);
    }
    const notIn = records(get(hook, "namespaceSelector.matchExpressions")).find((e) =>
      e.key === "kubernetes.io/metadata.name" && e.operator === "NotIn"
    );
    const excluded = strings(notIn?.values).sort();
    if (JSON.stringify(excluded) !== JSON.stringify([...EXCLUDED_NAMESPACES].sort())) {
      problems.push(`${where}: namespaceSelector must exclude ${EXCLUDED_NAMESPACES.join(", ")}`);
    }
    if (excludedFlag !== `--excluded-namespaces=${excluded.join(",")}`) {
      problems.push(
        `${where}: webhook --excluded-namespaces (${excludedFlag}) differs from namespaceSelector`,
      );
    }
    const rules = records(hook.rules);
    const podCreate = rules.some((r) =>
      strings(r.resources).includes("pods") && strings(r.operations).includes("CREATE") &&
      strings(r.apiGroups).includes("")
    );
    if (!podCreate) problems.push(`${where}: must intercept pod CREATE`);
    const svc = objects.find((o) =>
      o.kind === "Service" && get(o, "metadata.name") === get(hook, "clientConfig.service.name") &&
      get(o, "metadata.namespace") === get(hook, "clientConfig.service.namespace")
    );
    const port = get(hook, "clientConfig.service.port") ?? 443;
    if (!svc || !records(get(svc, "spec.ports")).some((p) => p.port === port)) {
      problems.push(`${where}: clientConfig.service does not name a Service port in the manifests`);
    }
  }
  const serverConf = objects.find((o) =>
    o.kind === "ConfigMap" && String(get(o, "metadata.name")).startsWith("spire-server")
  );
  const conf = stringMap(get(serverConf, "data"))["server.conf"] ?? "";
  const label = /webhook_label\s*=\s*"([^"]+)"/.exec(conf)?.[1];
  if (label !== WEBHOOK_LABEL) {
    problems.push(
      `SPIRE server.conf: k8sbundle webhook_label is ${label}, expected ${WEBHOOK_LABEL}`,
    );
  }
}

/**
 * The ClusterSPIFFEIDs are data the webhook applies, never kustomize resources (one apply cannot
 * create a CRD and its objects); the webhook mounts them, must not wait for its SVID before it
 * runs (it creates its own ClusterSPIFFEID), must not be mutated by itself, and may write exactly
 * the names the ConfigMap holds.
 */
function checkRegistrations(objects: KubeObject[], pods: PodContext[], problems: string[]): void {
  for (const o of objects.filter((o) => o.kind === CLUSTER_SPIFFE_ID_KIND)) {
    problems.push(
      `${id(o)}: a kustomize resource, so a first \`kubectl apply -k\` fails before its CRD is ` +
        `served; put it in manifests/spire/clusterspiffeids.yaml (ConfigMap ` +
        `${REGISTRATIONS_CONFIGMAP}) instead`,
    );
  }
  const configMap = objects.find((o) =>
    o.kind === "ConfigMap" && get(o, "metadata.name") === REGISTRATIONS_CONFIGMAP &&
    get(o, "metadata.namespace") === "spire-cacerts"
  );
  const names: string[] = [];
  if (!configMap) {
    problems.push(`ConfigMap spire-cacerts/${REGISTRATIONS_CONFIGMAP} is not rendered`);
  } else {
    for (const [key, text] of Object.entries(stringMap(get(configMap, "data")))) {
      if (!key.endsWith(".yaml")) continue;
      try {
        names.push(...parseRegistrations(text, key).map((r) => r.object.metadata.name));
      } catch (error) {
        if (!(error instanceof RegistrationFileError)) throw error;
        problems.push(`${id(configMap)}: ${error.message}`);
      }
    }
  }

  const webhook = pods.find((p) => p.name === "spire-cacerts-webhook");
  if (!webhook) return;
  const spec = get(webhook.template, "spec");
  const containers = records(get(spec, "containers"));
  const main = containers.find((c) => c.name === "webhook");
  const dir = strings(main?.args).find((a) => a.startsWith("--registrations-dir="))?.slice(
    "--registrations-dir=".length,
  );
  const volume = records(get(spec, "volumes")).find((v) =>
    get(v, "configMap.name") === REGISTRATIONS_CONFIGMAP
  );
  const mount = records(main?.volumeMounts).find((m) => m.name === volume?.name);
  if (!dir || !volume || mount?.mountPath !== dir || mount?.subPath !== undefined) {
    problems.push(
      `${webhook.owner} container webhook: --registrations-dir (${dir}) must be the mount path ` +
        `of a volume of ConfigMap ${REGISTRATIONS_CONFIGMAP} (without subPath, so updates reach it)`,
    );
  }
  if (records(get(spec, "initContainers")).length > 0) {
    problems.push(
      `${webhook.owner}: no init container may run before the webhook: it creates the ` +
        `ClusterSPIFFEID its own SVID comes from and serves HTTPS once spiffe-helper wrote it`,
    );
  }
  const labels = stringMap(get(webhook.template, "metadata.labels"));
  if (labels[INJECT_LABEL] === "true" && !EXCLUDED_NAMESPACES.includes(webhook.namespace)) {
    problems.push(
      `${webhook.owner}: its pods would be sent to the webhook itself (label ${INJECT_LABEL} in ` +
        `a namespace the MutatingWebhookConfiguration does not exclude)`,
    );
  }

  const role = objects.find((o) =>
    o.kind === "ClusterRole" && get(o, "metadata.name") === "spire-cacerts-webhook"
  );
  const rules = records(get(role, "rules")).filter((r) =>
    strings(r.apiGroups).some((g) => g === CLUSTER_SPIFFE_ID_GROUP || g === "*") &&
    strings(r.resources).some((res) => res === CLUSTER_SPIFFE_ID_PLURAL || res === "*")
  );
  const where = `ClusterRole spire-cacerts-webhook`;
  if (rules.length !== 1) {
    problems.push(
      `${where}: expected one rule for ${CLUSTER_SPIFFE_ID_PLURAL}, found ${rules.length}`,
    );
    return;
  }
  const verbs = strings(rules[0].verbs).sort();
  if (JSON.stringify(verbs) !== '["create","patch"]') {
    problems.push(
      `${where}: ${CLUSTER_SPIFFE_ID_PLURAL} verbs are ${verbs}; server-side apply needs create and patch only`,
    );
  }
  const granted = strings(rules[0].resourceNames).sort();
  const wanted = [...names].sort();
  if (JSON.stringify(granted) !== JSON.stringify(wanted)) {
    problems.push(
      `${where}: resourceNames of ${CLUSTER_SPIFFE_ID_PLURAL} are [${granted.join(", ")}] but ` +
        `ConfigMap ${REGISTRATIONS_CONFIGMAP} holds [${wanted.join(", ")}]; make ` +
        `manifests/webhook/rbac.yaml list exactly the names in manifests/spire/clusterspiffeids.yaml`,
    );
  }
}

/**
 * Checks rendered manifests against the deployment rules.
 *
 * @param objects every object `kubectl kustomize manifests` renders
 * @param options the expected tag of the project's own images
 * @returns one human-readable line per violation; empty when every rule holds
 */
export function checkManifests(objects: KubeObject[], options: ManifestRuleOptions): string[] {
  const problems: string[] = [];
  const pods = podTemplates(objects);
  for (const pod of pods) checkContainers(pod, options.ownImageTag, problems);
  checkReferences(objects, pods, problems);
  checkSelectors(objects, pods, problems);
  checkWebhook(objects, pods, problems);
  checkRegistrations(objects, pods, problems);
  return problems;
}
