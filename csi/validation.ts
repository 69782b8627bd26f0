/**
 * Validation of CSI Node requests for ephemeral inline trust-store volumes. Pure logic: every
 * failure is a {@link CsiError} with the status code the CSI spec names and a message that says
 * which field of which pod to fix.
 *
 * @module
 */

import { status } from "@grpc/grpc-js";
import { isAbsolute } from "node:path";
import { CsiError } from "./errors.ts";
import {
  CLASSES_ATTRIBUTE,
  DEFAULT_OS_FAMILY,
  type ObjectName,
  OS_ATTRIBUTE,
  type OsFamily,
  parseClassList,
} from "../api/mod.ts";
import type {
  NodeGetVolumeStatsRequest,
  NodePublishVolumeRequest,
  NodeUnpublishVolumeRequest,
} from "./proto.ts";
import { MountFlagError, parseMountFlags } from "./selinux.ts";

/** volume_context keys kubelet adds for inline volumes when `podInfoOnMount: true`. */
export const POD_KEYS = {
  name: "csi.storage.k8s.io/pod.name",
  namespace: "csi.storage.k8s.io/pod.namespace",
  uid: "csi.storage.k8s.io/pod.uid",
  serviceAccount: "csi.storage.k8s.io/serviceAccount.name",
  ephemeral: "csi.storage.k8s.io/ephemeral",
} as const;

export { CLASSES_ATTRIBUTE, OS_ATTRIBUTE };
/** OS family used when the `os` attribute is absent: the contract's `DEFAULT_OS_FAMILY`. */
export const DEFAULT_OS: OsFamily = DEFAULT_OS_FAMILY;

/** A pod as named by kubelet. */
export interface PodRef {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
  /** UID (may be empty when kubelet did not send it). */
  uid: string;
}

/** A validated NodePublishVolume request. */
export interface PublishSpec<Os> {
  /** Volume id. */
  volumeId: string;
  /** Absolute, normalised target path. */
  targetPath: string;
  /** The pod the volume belongs to. */
  pod: PodRef;
  /** OS family. */
  os: Os;
  /** CAProviderClasses, in attribute order. */
  classes: ObjectName[];
  /**
   * kubelet's `volume_capability.mount.mount_flags`, checked (an SELinux `context=` with
   * `seLinuxMount`, `ro`); `selinux.ts`'s `tmpfsMountOptions` turns them into the tmpfs's options.
   */
  mountFlags: string[];
}

/** Options for {@link validatePublish}. */
export interface ValidatePublishOptions<Os> {
  /** Parses the `os` attribute; throws with a message listing valid values. */
  parseOs: (value: string) => Os;
}

function podLabel(ctx: Record<string, string>): string {
  const ns = ctx[POD_KEYS.namespace];
  const name = ctx[POD_KEYS.name];
  return ns && name ? `pod ${ns}/${name}` : "the pod (no pod info in volume_context)";
}

/**
 * Checks a target or volume path: present, absolute, no `..` segment.
 *
 * @throws {CsiError} INVALID_ARGUMENT naming the field
 */
export function checkPath(field: string, value: string, who: string): string {
  if (!value) throw new CsiError(status.INVALID_ARGUMENT, `${field} is required (${who})`);
  if (!isAbsolute(value)) {
    throw new CsiError(status.INVALID_ARGUMENT, `${field} "${value}" must be absolute (${who})`);
  }
  if (value.split("/").includes("..")) {
    throw new CsiError(
      status.INVALID_ARGUMENT,
      `${field} "${value}" must not contain ".." (${who})`,
    );
  }
  if (value.includes("\0")) {
    throw new CsiError(status.INVALID_ARGUMENT, `${field} contains a NUL byte (${who})`);
  }
  return value.length > 1 ? value.replace(/\/+$/, "") : value;
}

/**
 * Validates a NodePublishVolume request for an ephemeral inline trust-store volume.
 *
 * Order follows the CSI spec and csi-sanity: volume_id, target_path, volume_capability, then the
 * driver's own rules (mount access, mount flags, read-only, ephemeral, pod info, attributes).
 *
 * @throws {CsiError} INVALID_ARGUMENT for every malformed request
 */
export function validatePublish<Os>(
  req: NodePublishVolumeRequest,
  options: ValidatePublishOptions<Os>,
): PublishSpec<Os> {
  const ctx = req.volumeContext ?? {};
  const who = podLabel(ctx);
  const bad = (message: string) => new CsiError(status.INVALID_ARGUMENT, `${message} (${who})`);
  if (!req.volumeId) throw bad("volume_id is required");
  const targetPath = checkPath("target_path", req.targetPath, who);
  const cap = req.volumeCapability;
  if (!cap) throw bad("volume_capability is required");
  if (cap.accessType === "block" || cap.block) {
    throw bad("volume_capability: block access is not supported, use a filesystem (mount) volume");
  }
  if (cap.accessType !== "mount") throw bad("volume_capability: access_type mount is required");
  const mountFlags = [...(cap.mount?.mountFlags ?? [])];
  try {
    parseMountFlags(mountFlags);
  } catch (error) {
    if (!(error instanceof MountFlagError)) throw error;
    throw new CsiError(
      status.INVALID_ARGUMENT,
      `volume_capability.mount.mount_flags: ${error.message} (${who})`,
      { cause: error },
    );
  }
  const mode = cap.accessMode?.mode ?? "UNKNOWN";
  if (mode === "UNKNOWN") throw bad("volume_capability.access_mode is required");
  if (!req.readonly) {
    throw bad("readonly must be true: set readOnly: true on the csi volume in the pod spec");
  }
  if (ctx[POD_KEYS.ephemeral] !== "true") {
    throw bad(
      `only ephemeral inline volumes are supported: volume_context "${POD_KEYS.ephemeral}" must be ` +
        `"true" (use a csi: volume in the pod spec, and podInfoOnMount: true on the CSIDriver)`,
    );
  }
  const namespace = ctx[POD_KEYS.namespace];
  const name = ctx[POD_KEYS.name];
  if (!namespace || !name) {
    throw bad(
      `volume_context needs "${POD_KEYS.namespace}" and "${POD_KEYS.name}": ` +
        `set podInfoOnMount: true on the CSIDriver`,
    );
  }
  let os: Os;
  try {
    os = options.parseOs(ctx[OS_ATTRIBUTE] || DEFAULT_OS);
  } catch (error) {
    throw bad(`volumeAttributes.${OS_ATTRIBUTE}: ${(error as Error).message}`);
  }
  const classText = ctx[CLASSES_ATTRIBUTE] ?? "";
  if (classText.trim() === "") {
    throw bad(`volumeAttributes.${CLASSES_ATTRIBUTE} is required (name or namespace/name)`);
  }
  let classes: ObjectName[];
  try {
    classes = parseClassList(classText, namespace);
  } catch (error) {
    throw bad(`volumeAttributes.${CLASSES_ATTRIBUTE}: ${(error as Error).message}`);
  }
  return {
    volumeId: req.volumeId,
    targetPath,
    pod: { namespace, name, uid: ctx[POD_KEYS.uid] ?? "" },
    os,
    classes,
    mountFlags,
  };
}

/**
 * Validates a NodeUnpublishVolume request.
 *
 * @throws {CsiError} INVALID_ARGUMENT when volume_id or target_path is missing or unsafe
 */
export function validateUnpublish(req: NodeUnpublishVolumeRequest): {
  volumeId: string;
  targetPath: string;
} {
  const who = `volume ${req.volumeId || "(none)"}`;
  if (!req.volumeId) throw new CsiError(status.INVALID_ARGUMENT, "volume_id is required");
  return { volumeId: req.volumeId, targetPath: checkPath("target_path", req.targetPath, who) };
}

/**
 * Validates a NodeGetVolumeStats request. Only presence is checked here: a path that does not
 * match a published volume (relative ones included) is NOT_FOUND, as csi-sanity expects.
 *
 * @throws {CsiError} INVALID_ARGUMENT when volume_id or volume_path is missing
 */
export function validateStats(req: NodeGetVolumeStatsRequest): {
  volumeId: string;
  volumePath: string;
} {
  if (!req.volumeId) throw new CsiError(status.INVALID_ARGUMENT, "volume_id is required");
  if (!req.volumePath) {
    throw new CsiError(status.INVALID_ARGUMENT, `volume_path is required (volume ${req.volumeId})`);
  }
  return { volumeId: req.volumeId, volumePath: req.volumePath.replace(/(.)\/+$/, "$1") };
}
