// A server-wide shutdown signal that every call can listen on in O(1).
//
// connect links each call's AbortSignal to the adapter's shutdownSignal: one
// addEventListener("abort") per call, one removeEventListener when it ends. On Node's
// AbortSignal (an EventTarget) both walk the listeners already there, so one real signal
// for a whole server made opening N streams O(N²) (seconds at 10k streams); one adapter
// per HTTP/2 session avoided that but cost ~18 KiB of heap per connection (its own
// router, method handlers and serializers). This signal keeps its listeners in a Set, so
// one adapter serves every connection. It offers what connect's createLinkedAbortController
// uses of a signal: aborted, reason, addEventListener / removeEventListener of "abort"
// (listeners called with the signal as `this`, as EventTarget does).

type AbortListener = (this: AbortSignal, event: Event) => void;

export interface ShutdownSignal {
  /** What connect is given as shutdownSignal. */
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
  /** Listeners attached now (for tests: every finished call removed its own). */
  listenerCount(): number;
}

export function createShutdownSignal(): ShutdownSignal {
  const listeners = new Set<AbortListener>();
  let aborted = false;
  let reason: unknown;
  const signal = {
    get aborted() {
      return aborted;
    },
    get reason() {
      return reason;
    },
    addEventListener(type: string, listener: AbortListener) {
      if (type === "abort" && !aborted) listeners.add(listener);
    },
    removeEventListener(type: string, listener: AbortListener) {
      if (type === "abort") listeners.delete(listener);
    },
    throwIfAborted() {
      if (aborted) throw reason;
    },
  } as unknown as AbortSignal;
  return {
    signal,
    abort(why?: unknown) {
      if (aborted) return;
      aborted = true;
      reason = why ?? new DOMException("This operation was aborted", "AbortError");
      const event = new Event("abort");
      for (const listener of [...listeners]) {
        listeners.delete(listener);
        listener.call(signal, event);
      }
    },
    listenerCount: () => listeners.size,
  };
}
