// A manual clock for code that takes `now` and timer functions: time moves only when a
// test calls advance(), which runs every timer due by then, in order of due time.
import type { CacheTimers, TimerHandle } from "../../src/sds/index.js";

export interface FakeClock extends CacheTimers {
  now(): number;
  /** Moves time forward by ms, running each timer when its due time is reached. */
  advance(ms: number): void;
  /** Timers set and neither fired nor cleared. */
  pending(): number;
}

export function createFakeClock(start = Date.parse("2025-01-01T00:00:00Z")): FakeClock {
  let t = start;
  let seq = 0;
  const timers = new Map<TimerHandle, { at: number; seq: number; fn: () => void }>();
  return {
    now: () => t,
    setTimeout(fn, ms) {
      const handle = {};
      timers.set(handle, { at: t + Math.max(0, ms), seq: seq++, fn });
      return handle;
    },
    clearTimeout(handle) {
      timers.delete(handle);
    },
    advance(ms) {
      const until = t + ms;
      for (;;) {
        let next: [TimerHandle, { at: number; seq: number; fn: () => void }] | undefined;
        for (const e of timers) {
          if (e[1].at <= until && (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[1].seq < next[1].seq))) next = e;
        }
        if (!next) break;
        timers.delete(next[0]);
        t = next[1].at;
        next[1].fn();
      }
      t = until;
    },
    pending: () => timers.size,
  };
}
