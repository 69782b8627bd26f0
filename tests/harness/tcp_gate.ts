/**
 * A TCP forwarder with a gate: connections are accepted at once but held (nothing is forwarded,
 * not even a TLS handshake) until the gate is opened, then piped byte for byte to the upstream
 * address. Put in front of the test kube-apiserver, it keeps a program's API request in flight for
 * as long as a test needs (e.g. a NodePublishVolume whose source lookup has started), without
 * changing anything the program and the apiserver say to each other.
 *
 * Plain TCP rather than an HTTP proxy (tests/faults/api_proxy.ts) because the point is to hold the
 * very first request, list or watch, and TLS passes through untouched: the apiserver's own
 * certificate (issued for 127.0.0.1) still matches.
 *
 * @module
 */

/** A running {@link TcpGate}. */
export class TcpGate {
  /** Port the gate listens on (127.0.0.1). */
  readonly port: number;
  readonly #listener: Deno.Listener;
  readonly #upstream: { hostname: string; port: number };
  readonly #conns = new Set<Deno.Conn>();
  #opened?: () => void;
  #gate: Promise<void>;
  #accepted = 0;
  #held = 0;

  private constructor(listener: Deno.Listener, upstream: { hostname: string; port: number }) {
    this.#listener = listener;
    this.#upstream = upstream;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#gate = new Promise<void>((resolve) => (this.#opened = resolve));
    this.#acceptLoop();
  }

  /**
   * Listens on a free loopback port, gate closed, forwarding to `upstream` once opened.
   *
   * @param upstream where connections go, e.g. the apiserver's host and port
   */
  static start(upstream: { hostname: string; port: number }): TcpGate {
    return new TcpGate(Deno.listen({ hostname: "127.0.0.1", port: 0 }), upstream);
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Connections accepted and waiting for the gate. */
  get held(): number {
    return this.#held;
  }

  /** Opens the gate: held and later connections are forwarded. */
  open(): void {
    this.#opened?.();
  }

  /** Stops listening and drops every connection. */
  close(): void {
    this.open();
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    this.#conns.clear();
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#accepted++;
        this.#conns.add(conn);
        this.#forward(conn);
      }
    } catch { /* listener closed */ }
  }

  async #forward(conn: Deno.Conn): Promise<void> {
    this.#held++;
    await this.#gate;
    this.#held--;
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect(this.#upstream);
    } catch {
      this.#drop(conn);
      return;
    }
    this.#conns.add(upstream);
    await Promise.allSettled([
      conn.readable.pipeTo(upstream.writable),
      upstream.readable.pipeTo(conn.writable),
    ]);
    this.#drop(conn);
    this.#drop(upstream);
  }

  #drop(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}
