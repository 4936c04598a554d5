// Shutdown without half-applied pushes: each ADS stream reports whether it is settled
// (nothing queued, every response answered with an ACK or a NACK), and the server waits,
// bounded, until all are before it ends them. A mesh change is several round trips
// (CDS, then the EDS Envoy asks for the new clusters; LDS, then the RDS it asks for the
// new listeners): ending the streams in between leaves Envoy with clusters and listeners
// warming that refer to resources it will not get.
export interface StreamDrain {
  /** Registers a stream by its settled check; returns the function that unregisters it. */
  track(settled: () => boolean): () => void;
  /** Streams now tracked that are not settled. */
  unsettled(): number;
  /** Resolves true once every tracked stream is settled, false if `timeoutMs` passes first. */
  settle(timeoutMs: number): Promise<boolean>;
}

export function createStreamDrain(pollMs = 10): StreamDrain {
  const streams = new Set<() => boolean>();
  const unsettled = () => [...streams].filter((s) => !s()).length;
  return {
    track(settled) {
      streams.add(settled);
      return () => void streams.delete(settled);
    },
    unsettled,
    async settle(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (unsettled() > 0) {
        if (Date.now() >= deadline) return false;
        await new Promise((r) => setTimeout(r, pollMs));
      }
      return true;
    },
  };
}
