/**
 * The subset of the CSI v1 protocol (`csi.v1`, container-storage-interface/spec `csi.proto`
 * v1.12.0) that a node-only driver serves, with the spec's field numbers, and grpc-js service
 * definitions built from it with protobufjs. The text is embedded so that a bundled or compiled
 * program needs no file at run time.
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { Buffer } from "node:buffer";

/**
 * CSI v1 messages for the Identity and Node services. `google.protobuf.BoolValue` (Probe's
 * `ready`) is declared locally as `BoolValue { bool value = 1; }`, which is the same on the wire.
 */
export const CSI_PROTO = `
syntax = "proto3";
package csi.v1;

message BoolValue { bool value = 1; }

message GetPluginInfoRequest {}
message GetPluginInfoResponse {
  string name = 1;
  string vendor_version = 2;
  map<string, string> manifest = 3;
}
message GetPluginCapabilitiesRequest {}
message GetPluginCapabilitiesResponse { repeated PluginCapability capabilities = 1; }
message PluginCapability {
  message Service {
    enum Type {
      UNKNOWN = 0;
      CONTROLLER_SERVICE = 1;
      VOLUME_ACCESSIBILITY_CONSTRAINTS = 2;
      GROUP_CONTROLLER_SERVICE = 3;
      SNAPSHOT_METADATA_SERVICE = 4;
    }
    Type type = 1;
  }
  message VolumeExpansion {
    enum Type { UNKNOWN = 0; ONLINE = 1; OFFLINE = 2; }
    Type type = 1;
  }
  oneof type {
    Service service = 1;
    VolumeExpansion volume_expansion = 2;
  }
}
message ProbeRequest {}
message ProbeResponse { BoolValue ready = 1; }

message VolumeCapability {
  message BlockVolume {}
  message MountVolume {
    string fs_type = 1;
    repeated string mount_flags = 2;
    string volume_mount_group = 3;
  }
  message AccessMode {
    enum Mode {
      UNKNOWN = 0;
      SINGLE_NODE_WRITER = 1;
      SINGLE_NODE_READER_ONLY = 2;
      MULTI_NODE_READER_ONLY = 3;
      MULTI_NODE_SINGLE_WRITER = 4;
      MULTI_NODE_MULTI_WRITER = 5;
      SINGLE_NODE_SINGLE_WRITER = 6;
      SINGLE_NODE_MULTI_WRITER = 7;
    }
    Mode mode = 1;
  }
  oneof access_type {
    BlockVolume block = 1;
    MountVolume mount = 2;
  }
  AccessMode access_mode = 3;
}
message Topology { map<string, string> segments = 1; }

message NodePublishVolumeRequest {
  string volume_id = 1;
  map<string, string> publish_context = 2;
  string staging_target_path = 3;
  string target_path = 4;
  VolumeCapability volume_capability = 5;
  bool readonly = 6;
  map<string, string> secrets = 7;
  map<string, string> volume_context = 8;
}
message NodePublishVolumeResponse {}
message NodeUnpublishVolumeRequest {
  string volume_id = 1;
  string target_path = 2;
}
message NodeUnpublishVolumeResponse {}
message NodeGetVolumeStatsRequest {
  string volume_id = 1;
  string volume_path = 2;
  string staging_target_path = 3;
}
message NodeGetVolumeStatsResponse {
  repeated VolumeUsage usage = 1;
  VolumeCondition volume_condition = 2;
}
message VolumeUsage {
  enum Unit { UNKNOWN = 0; BYTES = 1; INODES = 2; }
  int64 available = 1;
  int64 total = 2;
  int64 used = 3;
  Unit unit = 4;
}
message VolumeCondition {
  bool abnormal = 1;
  string message = 2;
}
message NodeGetCapabilitiesRequest {}
message NodeGetCapabilitiesResponse { repeated NodeServiceCapability capabilities = 1; }
message NodeServiceCapability {
  message RPC {
    enum Type {
      UNKNOWN = 0;
      STAGE_UNSTAGE_VOLUME = 1;
      GET_VOLUME_STATS = 2;
      EXPAND_VOLUME = 3;
      VOLUME_CONDITION = 4;
      SINGLE_NODE_MULTI_WRITER = 5;
      VOLUME_MOUNT_GROUP = 6;
    }
    Type type = 1;
  }
  oneof type { RPC rpc = 1; }
}
message ControllerGetCapabilitiesRequest {}
message ControllerGetCapabilitiesResponse { repeated ControllerServiceCapability capabilities = 1; }
message ControllerServiceCapability {
  message RPC {
    enum Type { UNKNOWN = 0; CREATE_DELETE_VOLUME = 1; PUBLISH_UNPUBLISH_VOLUME = 2; }
    Type type = 1;
  }
  oneof type { RPC rpc = 1; }
}
message NodeGetInfoRequest {}
message NodeGetInfoResponse {
  string node_id = 1;
  int64 max_volumes_per_node = 2;
  Topology accessible_topology = 3;
}
`;

/** csi.v1.VolumeCapability as decoded (camelCase fields, enums as names). */
export interface VolumeCapability {
  /** Which oneof member is set: `"block"`, `"mount"` or undefined. */
  accessType?: "block" | "mount";
  /** Set for block access. */
  block?: Record<string, never>;
  /** Set for mount access. */
  mount?: { fsType?: string; mountFlags?: string[]; volumeMountGroup?: string };
  /** Access mode. */
  accessMode?: { mode?: string };
}

/** csi.v1.NodePublishVolumeRequest as decoded. */
export interface NodePublishVolumeRequest {
  /** Volume id (kubelet: `csi-<hash>` for inline volumes). */
  volumeId: string;
  /** Where the volume must appear. */
  targetPath: string;
  /** Staging path (unused: no STAGE_UNSTAGE_VOLUME). */
  stagingTargetPath: string;
  /** Requested capability. */
  volumeCapability?: VolumeCapability;
  /** Read-only publish. */
  readonly: boolean;
  /** Volume attributes plus the pod info kubelet adds. */
  volumeContext: Record<string, string>;
  /** Publish context (unused). */
  publishContext: Record<string, string>;
  /** Secrets (unused). */
  secrets: Record<string, string>;
}

/** csi.v1.NodeUnpublishVolumeRequest as decoded. */
export interface NodeUnpublishVolumeRequest {
  /** Volume id. */
  volumeId: string;
  /** Target path. */
  targetPath: string;
}

/** csi.v1.NodeGetVolumeStatsRequest as decoded. */
export interface NodeGetVolumeStatsRequest {
  /** Volume id. */
  volumeId: string;
  /** Path the volume is published at. */
  volumePath: string;
  /** Staging path (unused). */
  stagingTargetPath: string;
}

const root = protobuf.parse(CSI_PROTO, { keepCase: false }).root;

function lookup(name: string): protobuf.Type {
  return root.lookupType(`csi.v1.${name}`);
}

function method(service: string, name: string, request: string, response: string) {
  const req = lookup(request);
  const res = lookup(response);
  return {
    path: `/csi.v1.${service}/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: object) => Buffer.from(req.encode(req.fromObject(value)).finish()),
    requestDeserialize: (bytes: Buffer) =>
      req.toObject(req.decode(bytes), {
        longs: Number,
        enums: String,
        defaults: true,
        oneofs: true,
      }),
    responseSerialize: (value: object) => Buffer.from(res.encode(res.fromObject(value)).finish()),
    responseDeserialize: (bytes: Buffer) =>
      res.toObject(res.decode(bytes), {
        longs: Number,
        enums: String,
        defaults: true,
        oneofs: true,
      }),
  };
}

/** grpc-js definition of `csi.v1.Identity`. */
export const identityService: grpc.ServiceDefinition = {
  GetPluginInfo: method(
    "Identity",
    "GetPluginInfo",
    "GetPluginInfoRequest",
    "GetPluginInfoResponse",
  ),
  GetPluginCapabilities: method(
    "Identity",
    "GetPluginCapabilities",
    "GetPluginCapabilitiesRequest",
    "GetPluginCapabilitiesResponse",
  ),
  Probe: method("Identity", "Probe", "ProbeRequest", "ProbeResponse"),
};

/**
 * grpc-js definition of `csi.v1.Controller`, reduced to ControllerGetCapabilities. The plugin
 * does not advertise CONTROLLER_SERVICE, so Kubernetes never calls it; csi-sanity calls it
 * before every Node spec and needs a non-empty list, which the driver answers with UNKNOWN only.
 */
export const controllerService: grpc.ServiceDefinition = {
  ControllerGetCapabilities: method(
    "Controller",
    "ControllerGetCapabilities",
    "ControllerGetCapabilitiesRequest",
    "ControllerGetCapabilitiesResponse",
  ),
};

/** grpc-js definition of the `csi.v1.Node` methods this driver serves. */
export const nodeService: grpc.ServiceDefinition = {
  NodePublishVolume: method(
    "Node",
    "NodePublishVolume",
    "NodePublishVolumeRequest",
    "NodePublishVolumeResponse",
  ),
  NodeUnpublishVolume: method(
    "Node",
    "NodeUnpublishVolume",
    "NodeUnpublishVolumeRequest",
    "NodeUnpublishVolumeResponse",
  ),
  NodeGetCapabilities: method(
    "Node",
    "NodeGetCapabilities",
    "NodeGetCapabilitiesRequest",
    "NodeGetCapabilitiesResponse",
  ),
  NodeGetInfo: method("Node", "NodeGetInfo", "NodeGetInfoRequest", "NodeGetInfoResponse"),
  NodeGetVolumeStats: method(
    "Node",
    "NodeGetVolumeStats",
    "NodeGetVolumeStatsRequest",
    "NodeGetVolumeStatsResponse",
  ),
};
