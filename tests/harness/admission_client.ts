/**
 * Runs `admission-client` (tests/tools/admission-client), a Go `net/http` client with the
 * transport kube-apiserver uses for webhooks (keep-alives on, idle connections reused for up to
 * 90 s), and returns what it printed: per call the HTTP status, the error and whether the
 * request went out on a reused connection.
 *
 * A Go client rather than `node:https` because the question is what the API server's client
 * does with an idle connection: Go drops a pooled connection once it sees the server's FIN and
 * does not retry a POST that meets one closed while the request was being written.
 *
 * @module
 */

import { toolPath } from "./tools.ts";

/** One POST made by the client. */
export interface AdmissionCall {
  /** Which of the parallel clients (one connection each) made it. */
  client: number;
  /** Position in that client's sequence (0 = first call). */
  index: number;
  /** Idle gap slept before this call, in ms (0 for the first). */
  gapMs: number;
  /** HTTP status, 0 when the request failed. */
  status: number;
  /** The transport error, when the request failed. */
  error?: string;
  /** Whether the request went out on a connection that had served an earlier one. */
  reused: boolean;
  /** Whether that connection was idle in the pool. */
  wasIdle: boolean;
  /** How long it had been idle, in ms. */
  idleMs: number;
  /** Time from sending to the end of the response, in ms. */
  durationMs: number;
  /** `response.uid` of the AdmissionReview answered, when the body was one. */
  uid?: string;
  /** `response.allowed` of the AdmissionReview answered, when the body was one. */
  allowed?: boolean;
}

/** What `admission-client` prints. */
export interface AdmissionClientResult {
  /** The URL posted to. */
  url: string;
  /** Every call of every client. */
  calls: AdmissionCall[];
  /** Calls with an error or a status other than 200. */
  failed: number;
}

/** Options of {@link runAdmissionClient}. */
export interface AdmissionClientOptions {
  /** Webhook URL, e.g. `https://127.0.0.1:8443/mutate`. */
  url: string;
  /** PEM file of the CA the server certificate chains to. */
  caFile: string;
  /** TLS server name to verify (e.g. `localhost`). */
  serverName: string;
  /** File holding the AdmissionReview JSON posted on every call. */
  bodyFile: string;
  /** Idle gaps between calls, in ms: `gapsMs.length + 1` calls per client. */
  gapsMs: readonly number[];
  /** Independent clients (each its own transport, so its own connection); default 1. */
  parallel?: number;
}

/** `admission-client` exited non-zero or printed something that is not its result. */
export class AdmissionClientError extends Error {
  /**
   * Creates the error.
   *
   * @param message what went wrong
   * @param options the underlying error
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AdmissionClientError";
  }
}

/**
 * Runs the client to completion (the sum of the gaps plus the calls) and parses its output.
 *
 * @throws {AdmissionClientError} when it exits non-zero or prints no result
 * @throws {ToolMissingError} when it has not been built
 */
export async function runAdmissionClient(
  options: AdmissionClientOptions,
): Promise<AdmissionClientResult> {
  const args = [
    `-url=${options.url}`,
    `-ca=${options.caFile}`,
    `-server-name=${options.serverName}`,
    `-body=${options.bodyFile}`,
    `-gaps=${options.gapsMs.map((ms) => `${ms}ms`).join(",")}`,
    `-parallel=${options.parallel ?? 1}`,
  ];
  const output = await new Deno.Command(toolPath("admission-client"), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr).trim();
  if (!output.success) {
    throw new AdmissionClientError(
      `admission-client ${args.join(" ")} exited ${output.code}: ${stderr || stdout}`,
    );
  }
  let parsed: AdmissionClientResult;
  try {
    parsed = JSON.parse(stdout) as AdmissionClientResult;
  } catch (error) {
    throw new AdmissionClientError(`admission-client printed no JSON: ${stdout.slice(0, 200)}`, {
      cause: error,
    });
  }
  if (!Array.isArray(parsed.calls) || typeof parsed.failed !== "number") {
    throw new AdmissionClientError(`admission-client printed no result: ${stdout.slice(0, 200)}`);
  }
  return parsed;
}
