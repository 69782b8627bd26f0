/**
 * The live heap of a Deno child process started with `--inspect`: a full garbage collection
 * through the V8 inspector protocol (`HeapProfiler.collectGarbage`), then `Runtime.getHeapUsage`.
 * What is left is what the program still references, to within a few hundred KB, whereas VmRSS
 * also holds garbage V8 has not collected yet and pages it keeps: for leak tests that must see a
 * few KB per volume over a few hundred volumes.
 *
 * @module
 */

/** The inspector did not answer as expected. */
export class InspectorError extends Error {
  /**
   * @param message what failed
   * @param options the underlying error
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InspectorError";
  }
}

interface Target {
  webSocketDebuggerUrl?: string;
}

/** Sends inspector protocol calls over one WebSocket, one at a time. */
async function withSession<T>(
  wsUrl: string,
  fn: (send: (method: string, params?: object) => Promise<Record<string, unknown>>) => Promise<T>,
): Promise<T> {
  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = (e) => reject(new InspectorError(`cannot connect to ${wsUrl}`, { cause: e }));
  });
  let nextId = 1;
  const pending = new Map<number, (message: Record<string, unknown>) => void>();
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as Record<string, unknown>;
    if (typeof message.id === "number") pending.get(message.id)?.(message);
  };
  const send = (method: string, params: object = {}) => {
    const id = nextId++;
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      pending.set(id, (message) => {
        pending.delete(id);
        if (message.error) {
          reject(new InspectorError(`${method}: ${JSON.stringify(message.error)}`));
        } else resolve((message.result ?? {}) as Record<string, unknown>);
      });
      ws.send(JSON.stringify({ id, method, params }));
    });
  };
  try {
    return await fn(send);
  } finally {
    const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));
    ws.close();
    await closed;
  }
}

/**
 * Collects garbage in the process whose inspector listens on `127.0.0.1:<port>` and returns the
 * V8 heap still in use, in MB (10^6 bytes).
 *
 * @throws {InspectorError} when the inspector is not reachable or a call fails
 */
export async function liveHeapMB(port: number): Promise<number> {
  let targets: Target[];
  try {
    targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  } catch (error) {
    throw new InspectorError(`no inspector on 127.0.0.1:${port}`, { cause: error });
  }
  const wsUrl = targets[0]?.webSocketDebuggerUrl;
  if (!wsUrl) throw new InspectorError(`no debuggable target on 127.0.0.1:${port}`);
  return await withSession(wsUrl, async (send) => {
    // Two passes: the first can leave objects that only die once their finalizers have run.
    await send("HeapProfiler.collectGarbage");
    await send("HeapProfiler.collectGarbage");
    const usage = await send("Runtime.getHeapUsage");
    if (typeof usage.usedSize !== "number") {
      throw new InspectorError(`Runtime.getHeapUsage said ${JSON.stringify(usage)}`);
    }
    return usage.usedSize / 1e6;
  });
}
