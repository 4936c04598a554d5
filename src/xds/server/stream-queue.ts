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
