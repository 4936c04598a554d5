// Bounds the issuances in flight (key generation, CSR, CA round trip), so that a renewal
// storm (thousands of identities due together) neither blocks the process nor starves new
// streams: each grant yields to the event loop first, and a workload waiting for its first
// certificate goes ahead of renewals, whose current certificate is still valid.

/** "first": a workload has no certificate yet; "renewal": one is served meanwhile. */
export type IssuancePriority = "first" | "renewal";

export interface IssuanceQueue {
  /** Resolves, in a fresh macrotask, once an issuance may start; call the function it gives when done (twice is harmless). */
  acquire(priority: IssuancePriority): Promise<() => void>;
  /** Granted and not yet released (at most maxConcurrent). */
  readonly running: number;
  /** Waiting for a grant. */
  readonly waiting: number;
}

export function createIssuanceQueue(maxConcurrent: number): IssuanceQueue {
  if (!(maxConcurrent >= 1)) throw new RangeError(`maxConcurrentIssuance must be at least 1, got ${maxConcurrent}`);
  let running = 0;
  const first: Array<() => void> = [];
  const renewals: Array<() => void> = [];
  const pump = () => {
    while (running < maxConcurrent) {
      const grant = first.shift() ?? renewals.shift();
      if (!grant) return;
      running++;
      setImmediate(grant);
    }
  };
  return {
    acquire(priority) {
      return new Promise((resolve) => {
        (priority === "first" ? first : renewals).push(() => {
          let released = false;
          resolve(() => {
            if (released) return;
            released = true;
            running--;
            pump();
          });
        });
        pump();
      });
    },
    get running() {
      return running;
    },
    get waiting() {
      return first.length + renewals.length;
    },
  };
}
