/**
 * The names of log fields that more than one module writes, as spiffe-csi's `pkg/logkeys` names
 * them, so a query such as `jq 'select(.volumeId == "v1")'` finds every line about one thing. The
 * values are the names the logs already used; changing one changes what operators search for.
 *
 * @module
 */

/** Field names shared by the programs' JSON log lines. */
export const LOG_KEYS = {
  /** The failure, as one line of text (an API error's HTTP code and message; never key material). */
  error: "error",
  /** The signal that stops a program: `SIGTERM` or `SIGINT`. */
  signal: "signal",
  /** A listening TCP port. */
  port: "port",
  /** A directory read or watched. */
  dir: "dir",
  /** A delay before the next try, in milliseconds. */
  ms: "ms",
  /** Why something was refused or not written. */
  reason: "reason",
  /** An object's name. */
  name: "name",
  /** Object names. */
  names: "names",
  /** A namespace. */
  namespace: "namespace",
  /** A watched object's `namespace/name` key. */
  object: "object",
  /** A CAProviderClass as `namespace/name`. */
  class: "class",
  /** A CSI volume id. */
  volumeId: "volumeId",
  /** A CSI publish target path. */
  targetPath: "targetPath",
  /** spiffe-helper's certificate directory. */
  certDir: "certDir",
} as const;
