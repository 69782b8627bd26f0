/**
 * A real spire-server + spire-agent pair on one machine: sqlite datastore, disk key manager,
 * join-token node attestation, unix workload attestation, Workload API on a unix socket.
 *
 * Workloads are identified by the unix attestor's selectors (`unix:uid:<uid>`, `unix:gid:<gid>`,
 * ...). Every process of the test runs as the same uid, so entries sharing a selector all match
 * the same processes; give each entry a distinct `hint` and pass the same hint to
 * {@link runSpiffeHelper} (spiffe-helper's `hint` setting) to pick one of them.
 *
 * @module
 */

import { join } from "node:path";
import {
  type CommandResult,
  freePorts,
  type ManagedProcess,
  runCommand,
  startProcess,
  waitFor,
} from "./process.ts";
import { toolPath } from "./tools.ts";

/** Options for {@link startSpire}. */
export interface SpireOptions {
  /** Trust domain (default `example.org`). */
  trustDomain?: string;
  /** Default X.509-SVID lifetime in seconds for entries that set none (default 3600). */
  svidTtlSeconds?: number;
  /** CA lifetime in seconds (default 24 h). */
  caTtlSeconds?: number;
  /** How long to wait for each process to become healthy (default 60 s). */
  readyTimeoutMs?: number;
}

/** A registration entry to create. */
export interface EntryOptions {
  /** SPIFFE ID, either full (`spiffe://td/path`) or a path (`/workload/server`). */
  spiffeId: string;
  /** Selectors such as `unix:uid:0` (default: `unix:uid:<this process's uid>`). */
  selectors?: string[];
  /** DNS names; the first becomes the certificate's CN. */
  dnsNames?: string[];
  /** X.509-SVID lifetime in seconds (`-x509SVIDTTL`). */
  x509SvidTtlSeconds?: number;
  /** Entry hint, to tell apart entries whose selectors match the same workload. */
  hint?: string;
}

/** A running SPIRE server and agent. */
export interface Spire {
  /** Trust domain name. */
  trustDomain: string;
  /** Path of the agent's Workload API socket (a plain path, no `unix://`). */
  agentSocketPath: string;
  /** Path of the server's admin API socket. */
  serverSocketPath: string;
  /** SPIFFE ID of the attested agent (parent of created entries). */
  agentSpiffeId: string;
  /** Temporary directory with configs, data and logs; removed by `stop()`. */
  dir: string;
  /** Creates a registration entry parented to the agent and returns its entry ID. */
  createEntry(entry: EntryOptions): Promise<string>;
  /** Deletes a registration entry. */
  deleteEntry(entryId: string): Promise<void>;
  /** The trust bundle (X.509 roots) as PEM. */
  bundlePem(): Promise<string>;
  /** Runs `spire-server <args>` against this server's socket (flags go after the subcommand). */
  serverCli(args: string[]): Promise<CommandResult>;
  /** Stops both processes and removes the temporary directory. */
  stop(): Promise<void>;
}

/** Thrown when a spire-server command fails. */
export class SpireCommandError extends Error {
  /**
   * Creates the error for a failed spire-server command.
   *
   * @param args the subcommand and its flags
   * @param result what the command returned
   */
  constructor(args: readonly string[], result: CommandResult) {
    super(
      `spire-server ${args.join(" ")} failed (exit ${result.code}): ` +
        (result.stderr.trim() || result.stdout.trim()),
    );
    this.name = "SpireCommandError";
  }
}

function hclString(value: string): string {
  return JSON.stringify(value);
}

/**
 * Starts spire-server and spire-agent and waits until both are healthy.
 * Needs the `spire-server` and `spire-agent` tools.
 *
 * @throws {ToolMissingError} when a binary is not built
 */
export async function startSpire(options: SpireOptions = {}): Promise<Spire> {
  const serverBin = toolPath("spire-server");
  const agentBin = toolPath("spire-agent");
  const trustDomain = options.trustDomain ?? "example.org";
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const dir = await Deno.makeTempDir({ prefix: "spire-cacerts-spire-" });
  const processes: ManagedProcess[] = [];
  const cleanup = async () => {
    for (const proc of processes.reverse()) await proc.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  const serverSocketPath = join(dir, "server.sock");
  const agentSocketPath = join(dir, "agent.sock");
  const serverCli = (args: string[]) => {
    // The socket flag belongs to the subcommand: `spire-server entry create -socketPath ...`.
    const depth = args[0] === "healthcheck" ? 1 : 2;
    return runCommand([
      serverBin,
      ...args.slice(0, depth),
      "-socketPath",
      serverSocketPath,
      ...args.slice(depth),
    ]);
  };
  const checked = async (args: string[]) => {
    const result = await serverCli(args);
    if (result.code !== 0) throw new SpireCommandError(args, result);
    return result;
  };

  try {
    await Deno.mkdir(join(dir, "logs"));
    const [serverPort] = freePorts(1);
    const serverConf = join(dir, "server.conf");
    await Deno.writeTextFile(
      serverConf,
      `server {
  bind_address = "127.0.0.1"
  bind_port = ${serverPort}
  socket_path = ${hclString(serverSocketPath)}
  trust_domain = ${hclString(trustDomain)}
  data_dir = ${hclString(join(dir, "server-data"))}
  log_level = "INFO"
  ca_key_type = "ec-p256"
  ca_ttl = "${options.caTtlSeconds ?? 86400}s"
  default_x509_svid_ttl = "${options.svidTtlSeconds ?? 3600}s"
}

plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = ${hclString(join(dir, "server-data", "datastore.sqlite3"))}
    }
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = ${hclString(join(dir, "server-data", "keys.json"))}
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`,
    );
    const server = startProcess({
      name: "spire-server",
      program: serverBin,
      args: ["run", "-config", serverConf],
      logPath: join(dir, "logs", "spire-server.log"),
    });
    processes.push(server);
    await waitFor("spire-server healthcheck", async () => {
      return (await serverCli(["healthcheck"])).code === 0;
    }, {
      timeoutMs: readyTimeoutMs,
      intervalMs: 250,
      abort: () => server.assertRunning(),
      detail: () => `spire-server log:\n${server.logTail()}`,
    });

    const bundlePath = join(dir, "bundle.pem");
    await Deno.writeTextFile(bundlePath, (await checked(["bundle", "show"])).stdout);
    const tokenOut = (await checked(["token", "generate", "-ttl", "600"])).stdout;
    const token = /Token:\s*(\S+)/.exec(tokenOut)?.[1];
    if (!token) throw new Error(`spire-server token generate printed no token: ${tokenOut}`);
    const agentSpiffeId = `spiffe://${trustDomain}/spire/agent/join_token/${token}`;

    const agentConf = join(dir, "agent.conf");
    await Deno.writeTextFile(
      agentConf,
      `agent {
  data_dir = ${hclString(join(dir, "agent-data"))}
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = ${serverPort}
  socket_path = ${hclString(agentSocketPath)}
  trust_bundle_path = ${hclString(bundlePath)}
  trust_domain = ${hclString(trustDomain)}
  join_token = ${hclString(token)}
}

plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`,
    );
    const agent = startProcess({
      name: "spire-agent",
      program: agentBin,
      args: ["run", "-config", agentConf],
      logPath: join(dir, "logs", "spire-agent.log"),
    });
    processes.push(agent);
    await waitFor("spire-agent healthcheck", async () => {
      const result = await runCommand([agentBin, "healthcheck", "-socketPath", agentSocketPath]);
      return result.code === 0;
    }, {
      timeoutMs: readyTimeoutMs,
      intervalMs: 250,
      abort: () => {
        server.assertRunning();
        agent.assertRunning();
      },
      detail: () =>
        `spire-agent log:\n${agent.logTail()}\nspire-server log:\n${server.logTail(10)}`,
    });

    let stopped = false;
    return {
      trustDomain,
      agentSocketPath,
      serverSocketPath,
      agentSpiffeId,
      dir,
      async createEntry(entry) {
        const spiffeId = entry.spiffeId.startsWith("spiffe://")
          ? entry.spiffeId
          : `spiffe://${trustDomain}/${entry.spiffeId.replace(/^\/+/, "")}`;
        const selectors = entry.selectors ?? [`unix:uid:${Deno.uid()}`];
        const args = [
          "entry",
          "create",
          "-output",
          "json",
          "-parentID",
          agentSpiffeId,
          "-spiffeID",
          spiffeId,
          ...selectors.flatMap((selector) => ["-selector", selector]),
          ...(entry.dnsNames ?? []).flatMap((name) => ["-dns", name]),
          ...(entry.x509SvidTtlSeconds === undefined
            ? []
            : ["-x509SVIDTTL", String(entry.x509SvidTtlSeconds)]),
          ...(entry.hint === undefined ? [] : ["-hint", entry.hint]),
        ];
        const out = (await checked(args)).stdout;
        const parsed = JSON.parse(out) as {
          results: { status: { code: number; message: string }; entry?: { id: string } }[];
        };
        const result = parsed.results[0];
        if (!result?.entry?.id || result.status.code !== 0) {
          throw new SpireCommandError(args, { code: 0, stdout: out, stderr: "" });
        }
        return result.entry.id;
      },
      async deleteEntry(entryId) {
        await checked(["entry", "delete", "-entryID", entryId]);
      },
      async bundlePem() {
        return (await checked(["bundle", "show"])).stdout;
      },
      serverCli,
      async stop() {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
