// Debounce of mesh changes, as istiod's PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX: a
// change is published `afterMs` after the last one of a burst, and a steady stream of
// changes is published at least every `maxMs`. Only the latest value is kept. Time is
// injected, so tests run on a fake clock.
export interface DebounceClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface DebounceOptions {
  /** Quiet time after the last change (default 100 ms; 0: publish at once). */
  afterMs?: number;
  /** Longest a change waits while changes keep coming (default 1 s). */
  maxMs?: number;
  clock?: DebounceClock;
}

export interface Debouncer<T> {
  push(value: T): void;
  /** Publishes a pending value now. */
  flush(): void;
  cancel(): void;
  pending(): boolean;
}

export const DEFAULT_DEBOUNCE_AFTER_MS = 100;
export const DEFAULT_DEBOUNCE_MAX_MS = 1000;

const systemClock: DebounceClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export function createDebouncer<T>(fire: (value: T) => void, options: DebounceOptions = {}): Debouncer<T> {
  const afterMs = options.afterMs ?? DEFAULT_DEBOUNCE_AFTER_MS;
  const maxMs = Math.max(afterMs, options.maxMs ?? DEFAULT_DEBOUNCE_MAX_MS);
  const clock = options.clock ?? systemClock;
  let value: { v: T } | undefined;
  let first = 0;
  let timer: unknown;

  const clear = () => {
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = undefined;
  };
  const flush = () => {
    clear();
    const v = value;
    value = undefined;
    if (v) fire(v.v);
  };
  return {
    push(v) {
      if (afterMs <= 0) {
        value = { v };
        flush();
        return;
      }
      const now = clock.now();
      if (!value) first = now;
      value = { v };
      clear();
      const wait = Math.min(afterMs, first + maxMs - now);
      if (wait <= 0) flush();
      else timer = clock.setTimeout(flush, wait);
    },
    flush,
    cancel() {
      clear();
      value = undefined;
    },
    pending: () => value !== undefined,
  };
}
