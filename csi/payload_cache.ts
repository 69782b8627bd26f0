/**
 * Sources to store files: builds the trust set and renders one OS family's store, shared by every
 * volume with the same family and sources. Keyed by a SHA-256 of the family and the sources, so a
 * change to one Secret used by a thousand identical volumes renders once, not a thousand times;
 * at most 32 payloads are kept (a node rarely has more distinct stores).
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  type BaseRoots,
  buildTrustSet,
  type DroppedCertificate,
  type OsFamily,
  type Payload,
  type PemSource,
  renderTrustStore,
} from "../trust_store/mod.ts";

/**
 * A volume's sources could not be turned into a store. A first publish fails with it as
 * FAILED_PRECONDITION (`toCsiError`'s fallback); an update counts it as a `source` failure.
 */
export class RenderError extends Error {
  /**
   * Makes the error.
   *
   * @param message what failed, naming the object and key
   * @param options the underlying error as `cause`
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RenderError";
  }
}

/** The identity of a store: SHA-256 (hex) of the family and every source's name and text. */
export function storeHash(family: string, sources: readonly PemSource[]): string {
  const h = createHash("sha256").update(family);
  for (const s of sources) h.update("\0").update(s.name).update("\0").update(s.text);
  return h.digest("hex");
}

/** Options for {@link PayloadCache}. */
export interface PayloadCacheOptions {
  /** Public roots added under the referenced CAs (default: none). */
  baseRoots?: BaseRoots;
  /** Payloads kept (default 32). */
  capacity?: number;
}

/** A rendered store and the certificates its sources held that it leaves out. */
export interface RenderedStore {
  /** The files to write. */
  payload: Payload;
  /** The trust set's {@link DroppedCertificate}s (custom sources and base roots). */
  dropped: readonly DroppedCertificate[];
}

/** Rendered stores by {@link storeHash}; see the module documentation. */
export class PayloadCache {
  readonly #payloads = new Map<string, Promise<RenderedStore>>();
  readonly #baseRoots?: BaseRoots;
  readonly #capacity: number;

  /**
   * Makes an empty cache.
   *
   * @param options base roots and capacity
   */
  constructor(options: PayloadCacheOptions = {}) {
    this.#baseRoots = options.baseRoots;
    this.#capacity = options.capacity ?? 32;
  }

  /** Payloads held now. */
  get size(): number {
    return this.#payloads.size;
  }

  /**
   * The store for these sources, rendered once per hash (a failed render is not kept).
   *
   * @param hash {@link storeHash} of `family` and `sources`
   * @param family the OS family
   * @param sources the PEM sources
   * @throws {RenderError} a source holds no usable certificate, or rendering failed
   */
  async get(hash: string, family: OsFamily, sources: PemSource[]): Promise<Payload> {
    return (await this.render(hash, family, sources)).payload;
  }

  /**
   * The store for these sources with the certificates it leaves out, rendered once per hash (a
   * failed render is not kept).
   *
   * @param hash {@link storeHash} of `family` and `sources`
   * @param family the OS family
   * @param sources the PEM sources
   * @throws {RenderError} a source holds no usable certificate, or rendering failed
   */
  render(hash: string, family: OsFamily, sources: PemSource[]): Promise<RenderedStore> {
    let p = this.#payloads.get(hash);
    if (!p) {
      p = (async () => {
        try {
          const set = await buildTrustSet(sources, { base: this.#baseRoots });
          return { payload: await renderTrustStore(family, set), dropped: set.dropped };
        } catch (error) {
          throw new RenderError(error instanceof Error ? error.message : String(error), {
            cause: error,
          });
        }
      })();
      this.#payloads.set(hash, p);
      p.catch(() => this.#payloads.delete(hash));
      while (this.#payloads.size > this.#capacity) {
        this.#payloads.delete(this.#payloads.keys().next().value as string);
      }
    }
    return p;
  }
}
