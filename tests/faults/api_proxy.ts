/**
 * A TLS-terminating HTTP proxy in front of the test kube-apiserver, so a test can see and steer
 * the driver's watches: hold new watch requests, cut the running ones, and see which watch
 * answers were `410 Gone` (as an HTTP status or as an ERROR event in the stream). Everything else
 * passes through unchanged. Plus the etcd v3 JSON gateway calls used to compact history.
 *
 * Hand-written because the point is to interpose on single watch requests, which no proxy in the
 * import map does.
 *
 * @module
 */

import { join } from "node:path";
import { createCa, issueCertificate, type KubeApiServer } from "../harness/mod.ts";

/** One watch request the driver made through the proxy. */
export interface ProxiedWatch {
  /** Request path, e.g. `/api/v1/namespaces/shop/secrets`. */
  path: string;
  /** The `resourceVersion` it asked to start from. */
  resourceVersion: string | null;
  /** The apiserver's HTTP status (undefined while held or in flight). */
  status?: number;
  /** Whether the answer was 410 Gone (status or ERROR event). */
  gone: boolean;
}

/** A running {@link ApiProxy}. */
export class ApiProxy {
  /** Every watch request seen, in order. */
  readonly watches: ProxiedWatch[] = [];
  readonly #kube: KubeApiServer;
  readonly #client: Deno.HttpClient;
  readonly #active = new Map<AbortController, () => void>();
  #server?: Deno.HttpServer;
  #hold?: { promise: Promise<void>; release: () => void };
  #held = 0;
  /** `https://127.0.0.1:<port>`. */
  url = "";
  /** A kubeconfig (admin token) that goes through the proxy. */
  kubeconfigPath = "";

  private constructor(kube: KubeApiServer) {
    this.#kube = kube;
    this.#client = Deno.createHttpClient({ caCerts: [kube.caPem] });
  }

  /** Starts a proxy for `kube`, with its own CA and serving certificate under `dir`. */
  static async start(kube: KubeApiServer, dir: string): Promise<ApiProxy> {
    const proxy = new ApiProxy(kube);
    const ca = await createCa(dir, "proxy-ca", "fault-proxy-ca");
    const cert = await issueCertificate(ca, dir, "proxy", {
      commonName: "fault-proxy",
      ipAddresses: ["127.0.0.1"],
      usage: "server",
    });
    const port = await new Promise<number>((resolve) => {
      proxy.#server = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        cert: cert.certPem,
        key: cert.keyPem,
        onListen: ({ port }) => resolve(port),
      }, (req) => proxy.#handle(req));
    });
    proxy.url = `https://127.0.0.1:${port}`;
    proxy.kubeconfigPath = join(dir, "proxy.kubeconfig");
    await Deno.writeTextFile(
      proxy.kubeconfigPath,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{
          name: "proxy",
          cluster: { server: proxy.url, "certificate-authority-data": btoa(ca.certPem) },
        }],
        users: [{ name: "admin", user: { token: kube.token } }],
        contexts: [{ name: "proxy", context: { cluster: "proxy", user: "admin" } }],
        "current-context": "proxy",
      }),
    );
    return proxy;
  }

  /** Watch requests in flight (passed through, not yet ended). */
  get activeWatches(): number {
    return this.#active.size;
  }

  /** Watch requests currently held. */
  get held(): number {
    return this.#held;
  }

  /** Holds every new watch request until {@link releaseWatches}. */
  holdWatches(): void {
    if (this.#hold) return;
    let release!: () => void;
    const promise = new Promise<void>((resolve) => (release = resolve));
    this.#hold = { promise, release };
  }

  /** Lets held (and later) watch requests through. */
  releaseWatches(): void {
    this.#hold?.release();
    this.#hold = undefined;
  }

  /** Ends every watch stream in flight; returns how many. */
  cutWatches(): number {
    const ends = [...this.#active.values()];
    for (const end of ends) end();
    return ends.length;
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const watch = ["true", "1"].includes(url.searchParams.get("watch") ?? "");
    let record: ProxiedWatch | undefined;
    if (watch) {
      record = {
        path: url.pathname,
        resourceVersion: url.searchParams.get("resourceVersion"),
        gone: false,
      };
      this.watches.push(record);
      const hold = this.#hold;
      if (hold) {
        this.#held++;
        await hold.promise;
        this.#held--;
      }
    }
    const headers = new Headers(req.headers);
    for (const h of ["host", "accept-encoding", "connection", "content-length"]) headers.delete(h);
    const ac = new AbortController();
    if (watch) this.#active.set(ac, () => ac.abort());
    let upstream: Response;
    try {
      upstream = await fetch(this.#kube.url + url.pathname + url.search, {
        method: req.method,
        headers,
        body: req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer(),
        client: this.#client,
        signal: ac.signal,
        redirect: "manual",
      });
    } catch (error) {
      this.#active.delete(ac);
      return new Response(`proxy: upstream failed: ${(error as Error).message}`, { status: 502 });
    }
    const outHeaders = new Headers(upstream.headers);
    for (const h of ["content-encoding", "content-length", "transfer-encoding", "connection"]) {
      outHeaders.delete(h);
    }
    if (!record || !upstream.body) {
      this.#active.delete(ac);
      return new Response(upstream.body, { status: upstream.status, headers: outHeaders });
    }
    record.status = upstream.status;
    if (upstream.status === 410) record.gone = true;
    const rec = record;
    const reader = upstream.body.getReader();
    const decoder = new TextDecoder();
    let tail = "";
    // A watch is cut by ending its response cleanly (as a server-side timeout does) and dropping
    // the upstream stream; the client then sees the watch end and must list again.
    let end = () => {};
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        end = () => {
          this.#active.delete(ac);
          ac.abort();
          reader.cancel().catch(() => {});
          try {
            controller.close();
          } catch { /* already closed */ }
        };
        this.#active.set(ac, end);
      },
      pull: async (controller) => {
        try {
          const { done, value } = await reader.read();
          if (done) return end();
          tail = (tail + decoder.decode(value, { stream: true })).slice(-4096);
          if (/"type":"ERROR"[\s\S]*"code":410/.test(tail)) rec.gone = true;
          controller.enqueue(value);
        } catch {
          end(); // upstream gone (apiserver stopped): the watch ends here too
        }
      },
      cancel: () => end(),
    });
    return new Response(body, { status: upstream.status, headers: outHeaders });
  }

  /** Stops the proxy (cuts every stream). */
  async close(): Promise<void> {
    this.releaseWatches();
    this.cutWatches();
    await this.#server?.shutdown().catch(() => {});
    this.#client.close();
  }
}

/** The etcd client URL of a harness apiserver, read from the etcd process's command line. */
export async function etcdUrlOf(kube: KubeApiServer): Promise<string> {
  const dataDir = `--data-dir=${join(kube.dir, "etcd")}`;
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let args: string[];
    try {
      args = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).split("\0");
    } catch {
      continue;
    }
    if (!args.includes(dataDir)) continue;
    const flag = args.find((a) => a.startsWith("--listen-client-urls="));
    if (flag) return flag.slice("--listen-client-urls=".length).split(",")[0];
  }
  throw new Error(`no etcd process with ${dataDir}`);
}

/** Compacts etcd's history up to its current revision (physically); returns the revision. */
export async function compactEtcd(etcdUrl: string): Promise<number> {
  const range = await fetch(`${etcdUrl}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key: btoa("/"), count_only: true }),
  });
  if (!range.ok) throw new Error(`etcd range: ${range.status} ${await range.text()}`);
  const revision = Number((await range.json()).header.revision);
  const compact = await fetch(`${etcdUrl}/v3/kv/compaction`, {
    method: "POST",
    body: JSON.stringify({ revision: String(revision), physical: true }),
  });
  if (!compact.ok) throw new Error(`etcd compaction: ${compact.status} ${await compact.text()}`);
  await compact.body?.cancel();
  return revision;
}
