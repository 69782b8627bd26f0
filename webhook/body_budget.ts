/**
 * One process-wide budget of request-body bytes in flight, and the timed read that draws on it.
 *
 * Why: the webhook's memory under load is its bodies. A 3 MiB AdmissionReview costs several
 * times its size while it is held (the bytes, the decoded text, the parsed object, the patch),
 * so twenty concurrent ones took the process to 656 MB against a 384Mi container limit. The
 * budget refuses what would not fit before a byte of it is read: a request with a declared
 * `Content-Length` reserves that many bytes up front; a chunked one reserves each chunk as it
 * arrives. Bytes are released when the request is done with them, or when it is refused.
 *
 * The default, {@link IN_FLIGHT_FRACTION} = 1/32 of the container limit (12 MiB, four 3 MiB
 * reviews at 384Mi), is measured (webhook/mutate_bench.ts, 20 concurrent 3 MiB reviews, the
 * webhook in a 384Mi memory cgroup with the manifest's heap flags): each admitted 3 MiB review
 * held about 22 MB while it was parsed and planned; with 1/16 (eight at once) the peak was 307 MB,
 * over the 302 MB (75 % of the limit) target, and the 144 MiB old space came close enough to
 * its limit that V8 collected continuously; with 1/32 the peak was 244 MB. Small reviews are
 * untouched: 12 MiB is 600 typical 20 KB pods in flight.
 *
 * The read also has a deadline: Deno 2.8.3's `node:https` ignores `headersTimeout` and
 * `requestTimeout`, so a client that stops sending half-way would otherwise hold its reservation
 * and its socket for as long as it likes (80 such uploads of 3 MiB each are the bench's
 * slow-upload phase).
 *
 * @module
 */

/** Share of the container memory limit that request bodies may hold at once (see module docs). */
export const IN_FLIGHT_FRACTION = 1 / 32;

/**
 * Default budget of body bytes in flight for a container memory limit: {@link IN_FLIGHT_FRACTION}
 * of it, and never less than one body of `maxBodyBytes` (or no review that size could pass).
 *
 * @param limitBytes the container memory limit
 * @param maxBodyBytes the largest body accepted
 */
export function inFlightBytesFor(limitBytes: number, maxBodyBytes: number): number {
  return Math.max(maxBodyBytes, Math.floor(limitBytes * IN_FLIGHT_FRACTION));
}

/** Bytes reserved and released by every request; never more than `capacity` at once. */
export class ByteBudget {
  #used = 0;

  /** @param capacity bytes that may be reserved at once */
  constructor(readonly capacity: number) {}

  /** Bytes currently reserved. */
  get used(): number {
    return this.#used;
  }

  /** Reserves `bytes` if they fit, and says whether they did. */
  tryReserve(bytes: number): boolean {
    if (this.#used + bytes > this.capacity) return false;
    this.#used += bytes;
    return true;
  }

  /** Gives back `bytes` reserved earlier. */
  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
  }
}

/** The budget has no room for the body (refused before it is read, or mid-stream). */
export class BudgetExhaustedError extends Error {
  /**
   * @param wanted bytes the request needed
   * @param budget the budget at the time
   */
  constructor(readonly wanted: number, budget: ByteBudget) {
    super(
      `${budget.used} of ${budget.capacity} request-body bytes in flight; ` +
        `no room for ${wanted} more`,
    );
    this.name = "BudgetExhaustedError";
  }
}

/** The body is larger than the limit (declared so, or found so while streaming). */
export class BodyTooLargeError extends Error {
  /**
   * @param limit the largest body accepted
   * @param declared the declared `Content-Length`, when there was one
   */
  constructor(readonly limit: number, readonly declared?: number) {
    super(
      declared === undefined
        ? `body exceeds ${limit} bytes`
        : `body of ${declared} bytes exceeds ${limit} bytes`,
    );
    this.name = "BodyTooLargeError";
  }
}

/** The body did not arrive in full before the deadline. */
export class BodyTimeoutError extends Error {
  /**
   * @param timeoutMs the deadline
   * @param received bytes received by then, when known
   */
  constructor(readonly timeoutMs: number, readonly received?: number) {
    super(
      `body not received within ${timeoutMs} ms` +
        (received === undefined ? "" : ` (${received} bytes by then)`),
    );
    this.name = "BodyTimeoutError";
  }
}

/** The body stream failed before it was complete (the client went away or the stream broke). */
export class BodyAbortedError extends Error {
  /** @param cause the stream's error */
  constructor(cause: unknown) {
    super(`request body aborted: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = "BodyAbortedError";
  }
}

/** A body read in full, holding its reservation until {@link HeldBody.release}. */
export interface HeldBody {
  /** The bytes. */
  bytes: Uint8Array;
  /** Returns the reservation to the budget (idempotent). */
  release(): void;
}

/** Options of {@link readBody}. */
export interface ReadBodyOptions {
  /** The process-wide budget. */
  budget: ByteBudget;
  /** The whole body must arrive within this many milliseconds of the call. */
  timeoutMs: number;
  /** The largest body accepted (inclusive). */
  maxBytes: number;
  /** The declared `Content-Length`, or undefined for a chunked body. */
  declared?: number;
}

function deadline<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/**
 * Reads `request`'s body within the deadline, reserving its bytes from the budget: a declared
 * length at once (and with one whole-body read, about 70 µs cheaper per review than reading the
 * stream chunk by chunk), a chunked body chunk by chunk.
 *
 * @throws {BodyTooLargeError} when the body is over `maxBytes` (a declared one before any read)
 * @throws {BudgetExhaustedError} when the body does not fit the budget (nothing stays reserved)
 * @throws {BodyTimeoutError} when the body is not complete by the deadline
 * @throws {BodyAbortedError} when the stream fails first (nothing stays reserved)
 */
export async function readBody(request: Request, options: ReadBodyOptions): Promise<HeldBody> {
  const { budget, timeoutMs, declared, maxBytes } = options;
  if (request.body === null) return { bytes: new Uint8Array(0), release() {} };
  let reserved = 0;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    budget.release(reserved);
  };
  if (declared !== undefined) {
    if (declared > maxBytes) throw new BodyTooLargeError(maxBytes, declared);
    if (!budget.tryReserve(declared)) throw new BudgetExhaustedError(declared, budget);
    reserved = declared;
    // The whole-body read cannot be cancelled once it has the stream; the 408 closes the
    // connection, which ends it. Its reservation goes back at once rather than when the read
    // settles: an adapter that never settles a stream cut off by a closed socket would
    // otherwise leak the reservation, and the budget with it, one stalled client at a time.
    const read = request.arrayBuffer();
    try {
      const bytes = new Uint8Array(
        await deadline(read, timeoutMs, () => new BodyTimeoutError(timeoutMs)),
      );
      return { bytes, release };
    } catch (error) {
      release();
      read.catch(() => {});
      throw error instanceof BodyTimeoutError ? error : new BodyAbortedError(error);
    }
  }
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let failure: Error | undefined;
  const timer = setTimeout(() => {
    failure = new BodyTimeoutError(timeoutMs, reserved);
    reader.cancel(failure).catch(() => {});
  }, timeoutMs);
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (failure) throw failure;
      if (done) break;
      if (reserved + value.byteLength > maxBytes) {
        failure = new BodyTooLargeError(maxBytes);
        await reader.cancel(failure).catch(() => {});
        throw failure;
      }
      if (!budget.tryReserve(value.byteLength)) {
        failure = new BudgetExhaustedError(value.byteLength, budget);
        await reader.cancel(failure).catch(() => {});
        throw failure;
      }
      reserved += value.byteLength;
      chunks.push(value);
    }
  } catch (error) {
    release();
    throw failure ?? new BodyAbortedError(error);
  } finally {
    clearTimeout(timer);
  }
  const bytes = new Uint8Array(reserved);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { bytes, release };
}
