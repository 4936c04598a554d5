import { ConnectError } from "@connectrpc/connect";
import type { PushThrottle } from "./push-throttle.js";

// The outgoing side of one ADS stream: at most one pending response per key
// (a newer one replaces an older unsent one, so the queue is bounded by the number
// of types), drained in rank order; and a wake-up for the writer loop.
export interface StreamQueue<T> {
  put(key: string, rank: number, item: T): void;
  drop(key: string): void;
  take(): T | undefined;
  size(): number;
  /** Resolves on the next put / close. */
  wait(): Promise<void>;
  wake(): void;
}

export function createStreamQueue<T>(): StreamQueue<T> {
  const items = new Map<string, { rank: number; seq: number; item: T }>();
  let seq = 0;
  let waiter: (() => void) | undefined;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  return {
    put(key, rank, item) {
      items.set(key, { rank, seq: seq++, item });
      wake();
    },
    drop(key) {
      items.delete(key);
    },
    take() {
      let bestKey: string | undefined;
      let best: { rank: number; seq: number; item: T } | undefined;
      for (const [k, v] of items) {
        if (!best || v.rank < best.rank || (v.rank === best.rank && v.seq < best.seq)) {
          best = v;
          bestKey = k;
        }
      }
      if (bestKey === undefined) return undefined;
      items.delete(bestKey);
      return best!.item;
    },
    size: () => items.size,
    wait: () => new Promise<void>((resolve) => (waiter = resolve)),
    wake,
  };
}

/**
 * Runs the two halves of one bidi stream. A background reader hands each request
 * to `onRequest` (an exception there ends the stream with it, as a ConnectError);
 * the writer yields `respond(item)` for each item taken from the queue (undefined:
 * nothing to send), until the client half-closes, the call is aborted or the
 * reader failed. The caller releases its watches in a `finally` around this.
 */
export async function* serveStream<Req, T, Res>(
  requests: AsyncIterable<Req>,
  signal: AbortSignal,
  queue: StreamQueue<T>,
  onRequest: (req: Req) => void,
  respond: (item: T) => Res | undefined,
  throttle?: PushThrottle,
): AsyncGenerator<Res> {
  let ended = false;
  let failure: unknown;
  let closed = false;
  void (async () => {
    try {
      for await (const req of requests) {
        if (signal.aborted || closed) break;
        onRequest(req);
      }
    } catch (err) {
      failure = err;
    } finally {
      ended = true;
      queue.wake();
    }
  })();
  const onAbort = () => queue.wake();
  signal.addEventListener("abort", onAbort);
  try {
    for (;;) {
      if (signal.aborted) break;
      if (failure !== undefined) throw ConnectError.from(failure);
      if (queue.size() > 0) {
        // The slot first, then the freshest item: what was queued while waiting is not sent stale.
        const release = throttle ? await throttle.acquire() : undefined;
        try {
          const item = queue.take();
          const response = item === undefined || signal.aborted ? undefined : respond(item);
          if (response !== undefined) yield response;
        } finally {
          release?.();
        }
        continue;
      }
      if (ended) break;
      await queue.wait();
    }
  } finally {
    closed = true;
    signal.removeEventListener("abort", onAbort);
  }
}
