/**
 * TLS plumbing for SVIDs: a live certificate source for `node:https` / `node:tls` servers and a
 * trust source for clients (the SPIRE bundle or an OS trust store file).
 *
 * @module
 */

import type { SecureContextOptions } from "node:tls";
import type { SvidSet } from "./svid.ts";
import { SvidWatcher, type SvidWatcherOptions } from "./watcher.ts";
import { LastGood } from "./last_good.ts";
import { parseCertificates } from "./pem.ts";

/** The part of a `node:tls` / `node:https` server this module drives. */
export interface SecureContextTarget {
  /** `tls.Server.setSecureContext`. */
  setSecureContext(options: SecureContextOptions): void;
}

/** Options for {@link ServerCertificateSource}. */
export interface ServerCertificateSourceOptions extends SvidWatcherOptions {
  /**
   * Put the bundle in the context's `ca` (needed to verify client certificates for mTLS;
   * default true).
   */
  includeBundleAsCa?: boolean;
}

/**
 * TLS options for a set: `key`, `cert` (leaf + intermediates) and, optionally, `ca` (bundle).
 *
 * @param set a verified SVID set
 * @param includeBundleAsCa whether to add `ca`
 */
export function secureContextOptions(
  set: SvidSet,
  includeBundleAsCa = true,
): { key: string; cert: string; ca?: string } {
  return includeBundleAsCa
    ? { key: set.keyPem, cert: set.certPem, ca: set.bundlePem }
    : { key: set.keyPem, cert: set.certPem };
}

/**
 * Serves a server's SVID and swaps it live: each new good set is applied with
 * `server.setSecureContext()`, so new handshakes get the new certificate while established
 * connections continue.
 *
 * ```ts
 * const source = new ServerCertificateSource("/run/spiffe/certs");
 * const server = https.createServer({ ...(await source.initialOptions()) }, handler);
 * source.attach(server);
 * ```
 */
export class ServerCertificateSource {
  /** The underlying watcher (shared with anyone who wants the sets). */
  readonly watcher: SvidWatcher;
  #includeCa: boolean;
  #targets = new Set<SecureContextTarget>();
  #applied = 0;
  #served: SvidSet | undefined;
  #onError: ((error: Error) => void) | undefined;

  /**
   * Creates an instance.
   *
   * @param dir spiffe-helper's directory
   * @param options watcher timings and whether the bundle becomes `ca`
   */
  constructor(dir: string, options: ServerCertificateSourceOptions = {}) {
    this.#includeCa = options.includeBundleAsCa ?? true;
    this.#onError = options.onError;
    this.watcher = new SvidWatcher(dir, options);
    this.watcher.onUpdate((set) => {
      for (const target of this.#targets) this.#apply(target, set);
    });
  }

  /** Number of `setSecureContext` calls made so far. */
  get appliedCount(): number {
    return this.#applied;
  }

  /**
   * The set the attached servers present now: the last one a `setSecureContext` call took
   * (undefined before {@link attach}). It differs from `watcher.current()` when a server refused a set the watcher accepted, so
   * readiness and expiry are judged by this one.
   */
  served(): SvidSet | undefined {
    return this.#served;
  }

  /**
   * Waits for the first good set and returns the TLS options to create a server with.
   *
   * @param timeoutMs give up after this long (default: wait)
   */
  async initialOptions(timeoutMs?: number): Promise<{ key: string; cert: string; ca?: string }> {
    return secureContextOptions(await this.watcher.ready(timeoutMs), this.#includeCa);
  }

  /**
   * Keeps `server`'s certificate current from now on (and applies the current set at once if it
   * differs from what the server was created with).
   *
   * @returns a function that stops updating this server
   */
  attach(server: SecureContextTarget): () => void {
    this.#targets.add(server);
    const set = this.watcher.current();
    if (set) this.#apply(server, set);
    return () => this.#targets.delete(server);
  }

  /** Stops watching. */
  close(): void {
    this.#targets.clear();
    this.watcher.close();
  }

  #apply(target: SecureContextTarget, set: SvidSet): void {
    try {
      target.setSecureContext(secureContextOptions(set, this.#includeCa));
      this.#applied++;
      this.#served = set;
    } catch (error) {
      try {
        this.#onError?.(error as Error);
      } catch { /* ignore */ }
    }
  }
}

/** Thrown when a trust file has never been readable as a non-empty list of certificates. */
export class TrustSourceError extends Error {
  /** The trust file. */
  readonly path: string;

  /**
   * Creates an instance.
   *
   * @param path the trust file
   * @param reason why it cannot be used
   */
  constructor(path: string, reason: string) {
    super(`trust file ${path}: ${reason}`);
    this.name = "TrustSourceError";
    this.path = path;
  }
}

/** What a {@link TrustSource} returns. */
export interface TrustAnchors {
  /** PEM text to pass as `ca`. */
  pem: string;
  /** Number of certificates in it. */
  count: number;
  /** When it was read. */
  readAt: Date;
}

/**
 * Client trust: the certificates of one PEM file — `svid_bundle.pem` (SPIRE's bundle) or an OS
 * trust store file such as `/etc/ssl/certs/ca-certificates.crt` that the CSI volume provides.
 *
 * `get()` stats the file (following symlinks, so an AtomicWriter `..data` swap is seen) and
 * re-reads it when its inode, size or mtime changed (and at most a second after the last read);
 * a file caught mid-rewrite keeps the last good anchors. No watcher is needed, so a client that calls `get()` per connection always
 * trusts what is on disk now.
 */
export class TrustSource {
  /** The trust file. */
  readonly path: string;
  #stamp = "";
  #latest = new LastGood<TrustAnchors>();

  /**
   * Creates the error.
   *
   * @param path the PEM file to trust
   */
  constructor(path: string) {
    this.path = path;
  }

  /** Why the last re-read was rejected (the previous anchors stayed in use). */
  lastError(): Error | undefined {
    return this.#latest.error;
  }

  /**
   * The current anchors.
   *
   * @throws {TrustSourceError} when the file has never been readable
   */
  async get(): Promise<TrustAnchors> {
    try {
      const info = await Deno.stat(this.path);
      const stamp = `${info.ino}:${info.size}:${info.mtime?.getTime()}`;
      // A same-size rewrite within one mtime tick would keep the stamp: re-read each second too.
      const last = this.#latest.value;
      const stale = !last || Date.now() - last.readAt.getTime() >= 1_000;
      if (stamp !== this.#stamp || stale) {
        const pem = await Deno.readTextFile(this.path);
        const count = parseCertificates(pem, this.path).length;
        this.#latest.accept({ pem, count, readAt: new Date() });
        this.#stamp = stamp;
      }
    } catch (error) {
      this.#latest.reject(error as Error);
    }
    const anchors = this.#latest.value;
    if (!anchors) throw new TrustSourceError(this.path, this.#latest.error?.message ?? "not read");
    return anchors;
  }
}
