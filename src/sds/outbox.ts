// A bounded queue of outgoing stream messages, consumed by the handler's async
// generator. Overflow or end() with an error ends the stream with that error.
import { Code, ConnectError } from "@connectrpc/connect";

export interface Outbox<T> extends AsyncIterable<T> {
  /** Queues a message; on overflow the stream fails with RESOURCE_EXHAUSTED. */
  push(value: T): void;
  /** Ends the stream, cleanly or with an error. Later calls are ignored. */
  end(error?: ConnectError): void;
  readonly size: number;
}

export function createOutbox<T>(limit: number, onOverflow?: (error: ConnectError) => void): Outbox<T> {
  const buffer: T[] = [];
  let ended = false;
  let error: ConnectError | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    get size() {
      return buffer.length;
    },
    push(value) {
      if (ended) return;
      if (buffer.length >= limit) {
        ended = true;
        error = new ConnectError(`outgoing queue full (${limit} messages, maxQueuedMessages): the client does not read`, Code.ResourceExhausted);
        onOverflow?.(error);
      } else buffer.push(value);
      notify();
    },
    end(err) {
      if (ended) return;
      ended = true;
      error = err;
      notify();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (error) {
          buffer.length = 0;
          throw error;
        }
        const next = buffer.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (ended) return;
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
}
