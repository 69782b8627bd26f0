/**
 * A direct SPIFFE Workload API client: the `FetchX509SVID` server stream of the SPIRE agent over
 * its unix socket, so a workload can do without spiffe-helper. Each response is verified like a
 * file set ({@link verifySvidSet}) before it replaces the last good one.
 *
 * The three messages are declared here with the field numbers of SPIFFE's `workload.proto`
 * (`X509SVIDRequest`, `X509SVIDResponse`, `X509SVID`); the service has no proto package, so the
 * method path is `/SpiffeWorkloadAPI/FetchX509SVID`. Every call carries the metadata
 * `workload.spiffe.io: true`, without which the agent answers InvalidArgument.
 *
 * `@grpc/grpc-js` and `protobufjs` are loaded when the first source connects, not when this
 * module is: `spire/mod.ts` re-exports it, and the programs that read spiffe-helper's files (the
 * webhook, the examples) would otherwise carry ~13 MB of resident memory for a client they never
 * start (bench/memory_floor_bench.ts: grpc-js +8 MB, protobufjs +5 MB on a bare Deno process).
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { toPem } from "./pem.ts";
import { type SvidSet, verifySvidSet } from "./svid.ts";
import { Backoff } from "../cli/mod.ts";

/** What a connection needs, loaded on first use. */
interface Wire {
  grpc: typeof grpc;
  requestType: import("protobufjs").Type;
  responseType: import("protobufjs").Type;
}

let wire: Promise<Wire> | undefined;

function loadWire(): Promise<Wire> {
  wire ??= (async () => {
    const [grpcModule, { default: protobuf }] = await Promise.all([
      import("@grpc/grpc-js"),
      import("protobufjs"),
    ]);
    const root = protobuf.Root.fromJSON(MESSAGES);
    return {
      grpc: grpcModule,
      requestType: root.lookupType("X509SVIDRequest"),
      responseType: root.lookupType("X509SVIDResponse"),
    };
  })();
  return wire;
}

const MESSAGES = {
  nested: {
    X509SVIDRequest: { fields: {} },
    X509SVID: {
      fields: {
        spiffe_id: { type: "string", id: 1 },
        x509_svid: { type: "bytes", id: 2 },
        x509_svid_key: { type: "bytes", id: 3 },
        bundle: { type: "bytes", id: 4 },
        hint: { type: "string", id: 5 },
      },
    },
    X509SVIDResponse: {
      fields: {
        // crl (2) and federated_bundles (3) are not used; the decoder skips unknown fields.
        svids: { rule: "repeated", type: "X509SVID", id: 1 },
      },
    },
  },
};

/** One X.509-SVID as the agent sends it. */
export interface WireX509Svid {
  /** SPIFFE ID. */
  spiffeId: string;
  /** Leaf + intermediates, concatenated DER. */
  x509Svid: Uint8Array;
  /** PKCS#8 DER. */
  x509SvidKey: Uint8Array;
  /** Roots, concatenated DER. */
  bundle: Uint8Array;
  /** Entry hint. */
  hint: string;
}

/** Thrown for concatenated DER that is not a sequence of whole ASN.1 SEQUENCEs. */
export class DerSplitError extends Error {
  /**
   * Creates the error.
   *
   * @param reason where the data breaks
   */
  constructor(reason: string) {
    super(`concatenated DER is malformed: ${reason}`);
    this.name = "DerSplitError";
  }
}

/**
 * Splits concatenated DER certificates (the Workload API's encoding) into one array each.
 * Hand-written: a length-prefixed walk over top-level SEQUENCEs, which no allowed library offers.
 *
 * @throws {DerSplitError}
 */
export function splitDer(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes[offset] !== 0x30) throw new DerSplitError(`no SEQUENCE at byte ${offset}`);
    if (offset + 2 > bytes.length) throw new DerSplitError("truncated header");
    let length = bytes[offset + 1];
    let header = 2;
    if (length & 0x80) {
      const n = length & 0x7f;
      if (n === 0 || n > 4 || offset + 2 + n > bytes.length) {
        throw new DerSplitError(`bad length at byte ${offset}`);
      }
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + bytes[offset + 2 + i];
      header += n;
    }
    const end = offset + header + length;
    if (end > bytes.length) throw new DerSplitError(`element at byte ${offset} runs past the end`);
    out.push(bytes.subarray(offset, end));
    offset = end;
  }
  return out;
}

/**
 * Turns one wire SVID into a verified {@link SvidSet}.
 *
 * @param source label used in errors (e.g. the socket path)
 * @param svid the message
 * @throws {SvidSetError} or {@link DerSplitError}
 */
export function svidSetFromWire(source: string, svid: WireX509Svid): SvidSet {
  const pems = (der: Uint8Array) => splitDer(der).map((d) => toPem("CERTIFICATE", d)).join("");
  return verifySvidSet(source, {
    certPem: pems(svid.x509Svid),
    keyPem: toPem("PRIVATE KEY", svid.x509SvidKey),
    bundlePem: pems(svid.bundle),
  }, { svid: "x509_svid", key: "x509_svid_key", bundle: "bundle" });
}

/** Options for {@link WorkloadApiX509Source}. */
export interface WorkloadApiOptions {
  /** Pick the SVID with this hint (default: the first). */
  hint?: string;
  /** First retry delay after an error (default 500 ms; doubles up to 30 s). */
  retryMs?: number;
  /** Called for every stream error or rejected SVID. */
  onError?: (error: Error) => void;
}

/**
 * Streams X.509-SVIDs from the SPIRE agent and keeps the last good one.
 *
 * ```ts
 * const source = new WorkloadApiX509Source("/run/spire/agent.sock", { hint: "server" });
 * const set = await source.ready();
 * ```
 */
export class WorkloadApiX509Source {
  /** The agent socket path. */
  readonly socketPath: string;
  #options: WorkloadApiOptions;
  #client: grpc.Client | undefined;
  #wire: Wire | undefined;
  #call: grpc.ClientReadableStream<WireX509Svid> | undefined;
  #current: SvidSet | undefined;
  #listeners = new Set<(set: SvidSet) => void>();
  #waiters: { resolve: (s: SvidSet) => void; reject: (e: Error) => void }[] = [];
  readonly #backoff: Backoff;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /**
   * Connects at once (after loading the gRPC library on first use).
   *
   * @param socketPath agent socket, a plain path
   * @param options hint, retry and error callback
   */
  constructor(socketPath: string, options: WorkloadApiOptions = {}) {
    this.socketPath = socketPath;
    this.#options = options;
    this.#backoff = new Backoff({ initialMs: options.retryMs ?? 500, maxMs: 30_000 });
    loadWire().then((loaded) => {
      if (this.#closed) return;
      this.#wire = loaded;
      this.#client = new loaded.grpc.Client(
        `unix:${socketPath}`,
        loaded.grpc.credentials.createInsecure(),
      );
      this.#connect();
    }, (error: Error) => {
      this.#report(new Error(`cannot load the gRPC client: ${error.message}`, { cause: error }));
      this.close();
    });
  }

  /** The last good set. */
  current(): SvidSet | undefined {
    return this.#current;
  }

  /** Resolves with the first good set; rejects if closed first. */
  ready(): Promise<SvidSet> {
    if (this.#current) return Promise.resolve(this.#current);
    if (this.#closed) return Promise.reject(new Error("Workload API source closed"));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Registers a listener for new sets; returns its remover. */
  onUpdate(listener: (set: SvidSet) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Cancels the stream and closes the channel. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#call?.cancel();
    this.#client?.close();
    for (const w of this.#waiters.splice(0)) w.reject(new Error("Workload API source closed"));
  }

  #report(error: Error): void {
    try {
      this.#options.onError?.(error);
    } catch { /* ignore */ }
  }

  #connect(): void {
    const client = this.#client;
    const loaded = this.#wire;
    if (this.#closed || !client || !loaded) return;
    const { requestType, responseType } = loaded;
    const metadata = new loaded.grpc.Metadata();
    metadata.set("workload.spiffe.io", "true");
    const call = client.makeServerStreamRequest<Record<string, never>, WireX509Svid>(
      "/SpiffeWorkloadAPI/FetchX509SVID",
      (value) => Buffer.from(requestType.encode(requestType.create(value)).finish()),
      (bytes) => {
        const message = responseType.toObject(responseType.decode(bytes), { defaults: true }) as {
          svids: {
            spiffe_id: string;
            x509_svid: Uint8Array;
            x509_svid_key: Uint8Array;
            bundle: Uint8Array;
            hint: string;
          }[];
        };
        const wanted = this.#options.hint === undefined
          ? message.svids[0]
          : message.svids.find((s) => s.hint === this.#options.hint);
        if (!wanted) {
          throw new Error(
            `no SVID${this.#options.hint ? ` with hint ${this.#options.hint}` : ""} in response`,
          );
        }
        return {
          spiffeId: wanted.spiffe_id,
          x509Svid: wanted.x509_svid,
          x509SvidKey: wanted.x509_svid_key,
          bundle: wanted.bundle,
          hint: wanted.hint,
        };
      },
      {},
      metadata,
    );
    this.#call = call;
    call.on("data", (svid: WireX509Svid) => {
      try {
        const set = svidSetFromWire(this.socketPath, svid);
        this.#backoff.reset();
        if (this.#current?.id === set.id) return;
        this.#current = set;
        for (const w of this.#waiters.splice(0)) w.resolve(set);
        for (const listener of this.#listeners) {
          try {
            listener(set);
          } catch (error) {
            this.#report(error as Error);
          }
        }
      } catch (error) {
        this.#report(error as Error);
      }
    });
    call.on("error", (error: Error) => {
      if (this.#closed) return;
      // PermissionDenied means "no identity yet": retry with back-off, as for every other error.
      this.#report(error);
      this.#retry();
    });
    call.on("end", () => {
      if (!this.#closed) this.#retry();
    });
  }

  #retry(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#connect(), this.#backoff.next());
  }
}
