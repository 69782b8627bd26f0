/**
 * The SPIRE registrations the webhook keeps: ClusterSPIFFEID objects read from the YAML files of
 * a directory (the ConfigMap `spire-cacerts-webhook-registrations`, mounted into the webhook pod)
 * and server-side applied to the cluster.
 *
 * They cannot be applied with the rest of the manifests: `kubectl apply -k manifests` on a fresh
 * cluster sends them in the same request batch that creates their CRD, and kubectl refuses a
 * kind the apiserver does not serve yet. The webhook instead waits for the CRD (retrying with a
 * doubling back-off up to 5 s, logging once that it waits), applies every object as soon as the
 * CRD is served, applies again when the files change, and re-applies every object on a timer so
 * a deleted or edited ClusterSPIFFEID comes back.
 *
 * Objects are applied with field manager `spire-cacerts-webhook`, `force: true` (the files are
 * the source of truth for the names they list) and label `app.kubernetes.io/managed-by:
 * spire-cacerts`. ClusterSPIFFEIDs that are not in the files are never touched, and one removed
 * from the files is left in the cluster (delete it with `kubectl delete clusterspiffeid NAME`).
 *
 * ```ts
 * const registrations = await loadRegistrations("/etc/spire-cacerts/registrations");
 * const sync = new RegistrationSync({
 *   dir: "/etc/spire-cacerts/registrations",
 *   api: kubeRegistrationApi(client),
 *   initial: registrations,
 * });
 * sync.start();
 * ```
 *
 * @module
 */

// @ts-types="@types/js-yaml"
import { loadAll as loadAllYaml } from "js-yaml";
import { join } from "node:path";
import { Backoff, type Logger, SILENT_LOGGER } from "../cli/mod.ts";
import { FIELD_MANAGER, MANAGED_LABEL, MANAGED_VALUE } from "./controller.ts";
import { KubeApiError, type KubeClient, resourcePath } from "../kube/mod.ts";

/** API group of ClusterSPIFFEID. */
export const CLUSTER_SPIFFE_ID_GROUP = "spire.spiffe.io";
/** The only version accepted. */
export const CLUSTER_SPIFFE_ID_VERSION = "v1alpha1";
/** `apiVersion` every registration must carry. */
export const CLUSTER_SPIFFE_ID_API_VERSION =
  `${CLUSTER_SPIFFE_ID_GROUP}/${CLUSTER_SPIFFE_ID_VERSION}`;
/** `kind` every registration must carry. */
export const CLUSTER_SPIFFE_ID_KIND = "ClusterSPIFFEID";
/** Resource (plural) name. */
export const CLUSTER_SPIFFE_ID_PLURAL = "clusterspiffeids";
/** The CRD that must be served before anything can be applied. */
export const CLUSTER_SPIFFE_ID_CRD = `${CLUSTER_SPIFFE_ID_PLURAL}.${CLUSTER_SPIFFE_ID_GROUP}`;
/** Default period of the repair pass (ms). */
export const DEFAULT_REGISTRATION_RESYNC_MS = 5 * 60_000;

/** A ClusterSPIFFEID as it is applied. */
export interface ClusterSpiffeId {
  /** Always {@link CLUSTER_SPIFFE_ID_API_VERSION}. */
  apiVersion: typeof CLUSTER_SPIFFE_ID_API_VERSION;
  /** Always {@link CLUSTER_SPIFFE_ID_KIND}. */
  kind: typeof CLUSTER_SPIFFE_ID_KIND;
  /** Name, labels (always including the managed label) and annotations. */
  metadata: {
    /** Object name (cluster-scoped). */
    name: string;
    /** Labels from the file plus {@link MANAGED_LABEL}. */
    labels: Record<string, string>;
    /** Annotations from the file, if any. */
    annotations?: Record<string, string>;
  };
  /** The spec exactly as written in the file (the apiserver validates it). */
  spec: Record<string, unknown>;
}

/** One ClusterSPIFFEID read from a file, with where it came from. */
export interface Registration {
  /** File it was read from (as passed to {@link parseRegistrations}). */
  file: string;
  /** 1-based position of its YAML document in the file. */
  document: number;
  /** 1-based line where the document's content starts. */
  line: number;
  /** The object to apply. */
  object: ClusterSpiffeId;
}

/** Where in the registrations a problem was found. */
export interface RegistrationFileErrorOptions {
  /** The file. */
  file: string;
  /** 1-based document number, when the problem is in one document. */
  document?: number;
  /** 1-based line of that document (or of the YAML error). */
  line?: number;
  /** `Kind name` of the offending object, when known. */
  object?: string;
  /** The underlying error (a YAML parse error, a read error). */
  cause?: unknown;
}

/** A registrations file cannot be used; the message names the file, document, object and fix. */
export class RegistrationFileError extends Error {
  /** The file. */
  readonly file: string;
  /** 1-based document number, if the problem is in one document. */
  readonly document: number | undefined;
  /** 1-based line, if known. */
  readonly line: number | undefined;
  /** `Kind name` of the object, if known. */
  readonly object: string | undefined;

  /**
   * Creates an instance.
   *
   * @param problem what is wrong and how to fix it (the location is prepended)
   * @param options file, document, line, object and cause
   */
  constructor(problem: string, options: RegistrationFileErrorOptions) {
    const where = [
      options.file,
      options.document === undefined ? undefined : `document ${options.document}`,
      options.line === undefined ? undefined : `line ${options.line}`,
    ].filter((s) => s !== undefined).join(", ");
    super(
      `registrations ${where}${options.object ? `, ${options.object}` : ""}: ${problem}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "RegistrationFileError";
    this.file = options.file;
    this.document = options.document;
    this.line = options.line;
    this.object = options.object;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function definedKeys(value: Record<string, unknown>): string[] {
  return Object.keys(value).filter((k) => value[k] !== undefined);
}

function stringMap(
  value: unknown,
  field: string,
  where: RegistrationFileErrorOptions,
): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value) || Object.values(value).some((v) => typeof v !== "string")) {
    throw new RegistrationFileError(
      `${field} must map names to strings; quote values such as "true"`,
      where,
    );
  }
  return { ...value } as Record<string, string>;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DOCUMENT_START = /^---(\s|$)/;

/** Splits YAML text into documents at `---` lines; `start` is the 0-based first line. */
function splitDocuments(text: string): { text: string; start: number; line: number }[] {
  const lines = text.split(/\r?\n/);
  const docs: { lines: string[]; start: number }[] = [{ lines: [], start: 0 }];
  lines.forEach((line, i) => {
    if (DOCUMENT_START.test(line) && docs[docs.length - 1].lines.length > 0) {
      docs.push({ lines: [], start: i });
    }
    docs[docs.length - 1].lines.push(line);
  });
  const out: { text: string; start: number; line: number }[] = [];
  for (const doc of docs) {
    // A document of only comments, markers and blank lines is empty (YAML null): skip it.
    const content = doc.lines.findIndex((l) => {
      const body = l.replace(DOCUMENT_START, "").trim();
      return body !== "" && !body.startsWith("#") && body !== "...";
    });
    if (content === -1) continue;
    out.push({ text: doc.lines.join("\n"), start: doc.start, line: doc.start + content + 1 });
  }
  return out;
}

function describe(value: Record<string, unknown>): string {
  const name = isRecord(value.metadata) ? value.metadata.name : undefined;
  const kind = typeof value.kind === "string" ? value.kind : "object without kind";
  return typeof name === "string" ? `${kind} ${name}` : kind;
}

function toRegistration(
  value: unknown,
  file: string,
  document: number,
  line: number,
): Registration {
  const where: RegistrationFileErrorOptions = { file, document, line };
  if (!isRecord(value)) {
    throw new RegistrationFileError(
      `expected a ClusterSPIFFEID object, found ${
        value === null ? "an empty document" : Array.isArray(value) ? "a list" : typeof value
      }`,
      where,
    );
  }
  where.object = describe(value);
  if (value.apiVersion !== CLUSTER_SPIFFE_ID_API_VERSION || value.kind !== CLUSTER_SPIFFE_ID_KIND) {
    throw new RegistrationFileError(
      `apiVersion ${JSON.stringify(value.apiVersion)} kind ${JSON.stringify(value.kind)} is not ` +
        `${CLUSTER_SPIFFE_ID_API_VERSION} ${CLUSTER_SPIFFE_ID_KIND}; only ClusterSPIFFEIDs belong ` +
        `in the registrations files, put other objects in the kustomize resources`,
      where,
    );
  }
  for (const key of definedKeys(value)) {
    if (!["apiVersion", "kind", "metadata", "spec"].includes(key)) {
      throw new RegistrationFileError(
        key === "status"
          ? "status is written by spire-controller-manager; remove it from the file"
          : `top-level field ${key} is not part of a ClusterSPIFFEID; remove it`,
        where,
      );
    }
  }
  const metadata = value.metadata;
  if (!isRecord(metadata) || typeof metadata.name !== "string" || metadata.name === "") {
    throw new RegistrationFileError("metadata.name is missing; give the object a name", where);
  }
  const name = metadata.name;
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    throw new RegistrationFileError(
      `metadata.name ${JSON.stringify(name)} is not a DNS subdomain; use lower-case letters, ` +
        `digits, "-" and "."`,
      where,
    );
  }
  if (metadata.namespace !== undefined) {
    throw new RegistrationFileError(
      "metadata.namespace is set, but ClusterSPIFFEID is cluster-scoped; remove it",
      where,
    );
  }
  for (const key of definedKeys(metadata)) {
    if (!["name", "labels", "annotations"].includes(key)) {
      throw new RegistrationFileError(
        `metadata.${key} is set by the apiserver, not by the file; remove it`,
        where,
      );
    }
  }
  const labels = stringMap(metadata.labels, "metadata.labels", where) ?? {};
  const annotations = stringMap(metadata.annotations, "metadata.annotations", where);
  const managed = labels[MANAGED_LABEL];
  if (managed !== undefined && managed !== MANAGED_VALUE) {
    throw new RegistrationFileError(
      `label ${MANAGED_LABEL} is ${JSON.stringify(managed)}; the webhook sets it to ` +
        `${MANAGED_VALUE}, remove it from the file`,
      where,
    );
  }
  if (!isRecord(value.spec)) {
    throw new RegistrationFileError(
      "spec is missing or not a mapping; add spec.spiffeIDTemplate and the selectors",
      where,
    );
  }
  return {
    file,
    document,
    line,
    object: {
      apiVersion: CLUSTER_SPIFFE_ID_API_VERSION,
      kind: CLUSTER_SPIFFE_ID_KIND,
      metadata: {
        name,
        labels: { ...labels, [MANAGED_LABEL]: MANAGED_VALUE },
        ...(annotations ? { annotations } : {}),
      },
      spec: value.spec,
    },
  };
}

/**
 * Parses the text of one registrations file: every YAML document must be a
 * `spire.spiffe.io/v1alpha1` ClusterSPIFFEID with a name and a spec. Empty documents (only
 * comments) are skipped.
 *
 * @param text the file's content
 * @param file the file name used in errors
 * @throws {RegistrationFileError} for broken YAML, another kind of object or a missing field
 */
export function parseRegistrations(text: string, file: string): Registration[] {
  const out: Registration[] = [];
  splitDocuments(text).forEach((doc, i) => {
    const document = i + 1;
    let values: unknown[];
    try {
      values = loadAllYaml(doc.text) as unknown[];
    } catch (error) {
      const yamlError = error as { reason?: unknown; mark?: { line?: unknown } };
      const line = typeof yamlError.mark?.line === "number"
        ? doc.start + yamlError.mark.line + 1
        : doc.line;
      const reason = typeof yamlError.reason === "string" ? yamlError.reason : String(error);
      throw new RegistrationFileError(`not valid YAML (${reason}); fix the syntax`, {
        file,
        document,
        line,
        cause: error,
      });
    }
    for (const value of values) out.push(toRegistration(value, file, document, doc.line));
  });
  return out;
}

/**
 * Reads every `*.yaml` file of `dir` (sorted by name; hidden entries such as a ConfigMap
 * volume's `..data` are skipped, symlinks are followed) and parses it.
 *
 * @param dir the registrations directory
 * @returns every registration, in file and document order
 * @throws {RegistrationFileError} when the directory or a file cannot be read or parsed, or two
 *   documents define the same name
 */
export async function loadRegistrations(dir: string): Promise<Registration[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(".") || !entry.name.endsWith(".yaml")) continue;
      const info = await Deno.stat(join(dir, entry.name));
      if (info.isFile) names.push(entry.name);
    }
  } catch (error) {
    throw new RegistrationFileError(
      `cannot read the directory (${(error as Error).message}); mount the registrations ` +
        `ConfigMap there or fix --registrations-dir`,
      { file: dir, cause: error },
    );
  }
  names.sort();
  const out: Registration[] = [];
  const seen = new Map<string, Registration>();
  for (const name of names) {
    const path = join(dir, name);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      throw new RegistrationFileError(`cannot read the file (${(error as Error).message})`, {
        file: path,
        cause: error,
      });
    }
    for (const registration of parseRegistrations(text, path)) {
      const objectName = registration.object.metadata.name;
      const first = seen.get(objectName);
      if (first) {
        throw new RegistrationFileError(
          `metadata.name ${objectName} is already defined in ${first.file} document ` +
            `${first.document}; keep one of them`,
          {
            file: path,
            document: registration.document,
            line: registration.line,
            object: `${CLUSTER_SPIFFE_ID_KIND} ${objectName}`,
          },
        );
      }
      seen.set(objectName, registration);
      out.push(registration);
    }
  }
  return out;
}

/** What the apiserver stored for an applied object. */
export interface AppliedObject {
  /** `metadata.uid`: a new one means the object had been deleted and was created again. */
  uid: string;
  /** `metadata.generation`: it grows when the spec changed. */
  generation: number;
}

/** Thrown by a {@link RegistrationApi} when the ClusterSPIFFEID CRD is not served (yet). */
export class ResourceNotServedError extends Error {
  /** The CRD that is missing, e.g. `clusterspiffeids.spire.spiffe.io`. */
  readonly crd: string;

  /**
   * Creates an instance.
   *
   * @param crd the missing CRD
   * @param options the apiserver's answer
   */
  constructor(crd: string, options: { cause?: unknown } = {}) {
    super(
      `the apiserver does not serve ${crd} (404); apply manifests/crds or wait until the CRD ` +
        `is Established`,
      options,
    );
    this.name = "ResourceNotServedError";
    this.crd = crd;
  }
}

/** Thrown by a {@link RegistrationApi} when the apiserver refuses one object. */
export class RegistrationApplyError extends Error {
  /** Name of the ClusterSPIFFEID. */
  readonly object: string;
  /** HTTP status of the answer (0 when the request did not get one). */
  readonly status: number;

  /**
   * Creates an instance.
   *
   * @param object name of the ClusterSPIFFEID
   * @param status HTTP status (0 when no answer)
   * @param message what the apiserver said, with the fix
   * @param options the underlying error
   */
  constructor(object: string, status: number, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "RegistrationApplyError";
    this.object = object;
    this.status = status;
  }
}

/** The one call the sync needs; a fake in tests, {@link kubeRegistrationApi} in the program. */
export interface RegistrationApi {
  /**
   * Server-side applies `object` (field manager {@link FIELD_MANAGER}, forced).
   *
   * @throws {ResourceNotServedError} when the CRD is not served
   * @throws {RegistrationApplyError} for any other refusal or a failed request
   */
  apply(object: ClusterSpiffeId): Promise<AppliedObject>;
}

function statusMessage(body: unknown): string | undefined {
  try {
    const parsed = typeof body === "string" ? JSON.parse(body) : body;
    return isRecord(parsed) && typeof parsed.message === "string" ? parsed.message : undefined;
  } catch {
    return typeof body === "string" && body !== "" ? body : undefined;
  }
}

/**
 * The {@link RegistrationApi} of a real cluster: `PATCH
 * /apis/spire.spiffe.io/v1alpha1/clusterspiffeids/NAME` with `application/apply-patch+yaml`.
 * RBAC needs `create` and `patch` on `clusterspiffeids` (both may be limited by `resourceNames`:
 * an apply that creates the object is authorized as `create` of that name).
 *
 * @param client cluster access
 */
export function kubeRegistrationApi(client: KubeClient): RegistrationApi {
  return {
    async apply(object) {
      const name = object.metadata.name;
      let stored: unknown;
      try {
        stored = await client.apply(
          resourcePath({
            group: CLUSTER_SPIFFE_ID_GROUP,
            version: CLUSTER_SPIFFE_ID_VERSION,
            plural: CLUSTER_SPIFFE_ID_PLURAL,
            name,
          }),
          object,
          { fieldManager: FIELD_MANAGER, force: true },
        );
      } catch (error) {
        if (!(error instanceof KubeApiError)) {
          throw new RegistrationApplyError(
            name,
            0,
            `ClusterSPIFFEID ${name}: request failed (${(error as Error).message}); ` +
              `check that the apiserver is reachable`,
            { cause: error },
          );
        }
        // An apply creates a missing object, so a 404 means the resource itself is not served.
        if (error.code === 404) {
          throw new ResourceNotServedError(CLUSTER_SPIFFE_ID_CRD, { cause: error });
        }
        const said = statusMessage(error.body) ?? error.message;
        const fix = error.code === 403
          ? `; add ${name} to resourceNames of the clusterspiffeids rule of ClusterRole ` +
            `spire-cacerts-webhook (manifests/webhook/rbac.yaml)`
          : error.code === 422 || error.code === 400
          ? "; fix the object in the registrations file"
          : "";
        throw new RegistrationApplyError(
          name,
          error.code,
          `ClusterSPIFFEID ${name}: apply refused with ${error.code} (${said})${fix}`,
          { cause: error },
        );
      }
      const metadata = isRecord(stored) && isRecord(stored.metadata) ? stored.metadata : {};
      return {
        uid: String(metadata.uid ?? ""),
        generation: typeof metadata.generation === "number" ? metadata.generation : 0,
      };
    },
  };
}

/** What one {@link RegistrationSync.syncOnce} pass did. */
export interface SyncResult {
  /** Per name: the outcome of its apply. */
  outcomes: Record<string, "applied" | "recreated" | "updated" | "unchanged">;
  /** Names whose apply failed, with the error. */
  failed: Record<string, Error>;
  /** Whether the CRD was not served (nothing could be applied). */
  waitingForCrd: boolean;
}

/** Options of {@link RegistrationSync}. */
export interface RegistrationSyncOptions {
  /** Where the files are (re-read on change and on every pass). */
  dir: string;
  /** Cluster access. */
  api: RegistrationApi;
  /** Registrations already loaded at start (else the first pass loads them). */
  initial?: Registration[];
  /** Period of the repair pass after a successful one (default 5 min). */
  resyncMs?: number;
  /** First retry delay after a failed pass (default 500 ms); it doubles up to `retryMaxMs`. */
  retryMinMs?: number;
  /**
   * Longest retry delay (default 5 s: a 404 costs the apiserver little, and the CRD usually
   * becomes served within seconds, created by the same apply as the webhook).
   */
  retryMaxMs?: number;
  /** Quiet time after a file event before re-reading (default 200 ms). */
  debounceMs?: number;
  /** Where events go. */
  log?: Logger;
}

function canonical(registrations: readonly Registration[]): string {
  return JSON.stringify(registrations.map((r) => r.object));
}

/**
 * Keeps the ClusterSPIFFEIDs of a directory applied: a loop of passes, each applying every
 * object, then sleeping `resyncMs` (or the back-off after a failure), woken early when the files
 * change.
 */
export class RegistrationSync {
  #options: RegistrationSyncOptions;
  #log: Logger;
  #registrations: Registration[] | undefined;
  #known = new Map<string, AppliedObject>();
  #lastErrors = new Map<string, string>();
  #fileError: string | undefined;
  #waiting = false;
  #everApplied = false;
  #dirty = true;
  #pending = false;
  #stopped = false;
  #wake: (() => void) | undefined;
  #watcher: Deno.FsWatcher | undefined;
  #debounce: ReturnType<typeof setTimeout> | undefined;
  #loop: Promise<void> | undefined;
  #appliedWaiters: (() => void)[] = [];

  /** Creates the sync; nothing runs until {@link start}. */
  constructor(options: RegistrationSyncOptions) {
    this.#options = options;
    this.#log = options.log ?? SILENT_LOGGER;
    this.#registrations = options.initial;
  }

  /** The registrations in use (the last set read without error). */
  registrations(): readonly Registration[] {
    return this.#registrations ?? [];
  }

  /** Resolves once every registration has been applied at least once. */
  applied(): Promise<void> {
    if (this.#everApplied) return Promise.resolve();
    return new Promise((resolve) => this.#appliedWaiters.push(resolve));
  }

  /**
   * Starts the file watch and the loop; returns at once. The first pass runs immediately.
   *
   * @throws {RegistrationFileError} when no `initial` set was given and the files are unusable
   */
  async start(): Promise<void> {
    if (this.#registrations === undefined) {
      this.#registrations = await loadRegistrations(this.#options.dir);
    }
    this.#startWatch();
    this.#loop = this.#run();
  }

  /**
   * Stops the loop and the watch; resolves when the current pass has finished, or after at most
   * `graceMs` (a request to an unreachable apiserver is not waited for).
   */
  async stop(graceMs = 2_000): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#debounce);
    try {
      this.#watcher?.close();
    } catch { /* already closed */ }
    this.#wake?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#loop,
      new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs)),
    ]);
    clearTimeout(timer);
  }

  /**
   * Re-reads the files; on an error keeps the last good set and logs the error once.
   * Returns whether the set changed.
   */
  async reload(): Promise<boolean> {
    let next: Registration[];
    try {
      next = await loadRegistrations(this.#options.dir);
    } catch (error) {
      const message = (error as Error).message;
      if (message !== this.#fileError) {
        this.#log.error("registrations unusable; keeping the last good set", {
          error: message,
          dir: this.#options.dir,
        });
      }
      this.#fileError = message;
      return false;
    }
    this.#fileError = undefined;
    const changed = this.#registrations === undefined ||
      canonical(next) !== canonical(this.#registrations);
    this.#registrations = next;
    if (changed) this.#dirty = true;
    return changed;
  }

  /** One pass: applies every registration and reports what happened; never throws. */
  async syncOnce(): Promise<SyncResult> {
    const result: SyncResult = { outcomes: {}, failed: {}, waitingForCrd: false };
    const registrations = this.#registrations ?? [];
    for (const { object } of registrations) {
      const name = object.metadata.name;
      let stored: AppliedObject;
      try {
        stored = await this.#options.api.apply(object);
      } catch (error) {
        if (error instanceof ResourceNotServedError) {
          result.waitingForCrd = true;
          break;
        }
        const message = (error as Error).message;
        result.failed[name] = error as Error;
        if (this.#lastErrors.get(name) !== message) {
          this.#log.warn("ClusterSPIFFEID not applied; retrying", { name, error: message });
        }
        this.#lastErrors.set(name, message);
        continue;
      }
      this.#lastErrors.delete(name);
      const before = this.#known.get(name);
      this.#known.set(name, stored);
      const outcome = before === undefined
        ? "applied"
        : before.uid !== stored.uid
        ? "recreated"
        : before.generation !== stored.generation
        ? "updated"
        : "unchanged";
      result.outcomes[name] = outcome;
      if (outcome === "recreated") {
        this.#log.info("ClusterSPIFFEID was deleted; created again", { name });
      } else if (outcome === "updated") {
        this.#log.info("ClusterSPIFFEID spec differed from the file; applied again", { name });
      }
    }
    if (result.waitingForCrd) {
      if (!this.#waiting) {
        this.#log.info(`waiting for CRD ${CLUSTER_SPIFFE_ID_CRD} to apply the ClusterSPIFFEIDs`, {
          crd: CLUSTER_SPIFFE_ID_CRD,
          names: registrations.map((r) => r.object.metadata.name),
        });
      }
      this.#waiting = true;
      return result;
    }
    this.#waiting = false;
    if (Object.keys(result.failed).length === 0) {
      if (this.#dirty || !this.#everApplied) {
        this.#log.info("ClusterSPIFFEIDs applied", {
          names: registrations.map((r) => r.object.metadata.name),
        });
      }
      this.#dirty = false;
      if (!this.#everApplied) {
        this.#everApplied = true;
        for (const resolve of this.#appliedWaiters.splice(0)) resolve();
      }
    }
    return result;
  }

  async #run(): Promise<void> {
    const backoff = new Backoff({
      initialMs: this.#options.retryMinMs ?? 500,
      maxMs: this.#options.retryMaxMs ?? 5_000,
    });
    const resync = this.#options.resyncMs ?? DEFAULT_REGISTRATION_RESYNC_MS;
    let first = true;
    while (!this.#stopped) {
      // The files are re-read on every pass too, in case a file event was missed.
      if (!first) await this.reload();
      first = false;
      const result = await this.syncOnce();
      const ok = !result.waitingForCrd && Object.keys(result.failed).length === 0;
      if (ok) backoff.reset();
      const delay = ok ? resync : backoff.next();
      if (!ok) this.#log.debug("ClusterSPIFFEIDs: next try", { ms: delay });
      await this.#sleep(delay);
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        this.#pending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  #startWatch(): void {
    try {
      this.#watcher = Deno.watchFs(this.#options.dir, { recursive: false });
    } catch (error) {
      // Without events the periodic pass still re-reads the files.
      this.#log.warn("cannot watch the registrations directory; relying on the periodic pass", {
        dir: this.#options.dir,
        error: (error as Error).message,
      });
      return;
    }
    const watcher = this.#watcher;
    (async () => {
      try {
        for await (const _event of watcher) {
          if (this.#stopped) break;
          clearTimeout(this.#debounce);
          this.#debounce = setTimeout(async () => {
            if (this.#stopped) return;
            if (await this.reload()) {
              this.#log.info("registrations changed; applying", { dir: this.#options.dir });
              // Wakes the loop now, or makes its next sleep return at once if a pass is running.
              this.#pending = true;
              this.#wake?.();
            }
          }, this.#options.debounceMs ?? 200);
        }
      } catch (error) {
        if (!this.#stopped) {
          this.#log.warn("registrations watch ended; relying on the periodic pass", {
            error: (error as Error).message,
          });
        }
      }
    })();
  }
}
