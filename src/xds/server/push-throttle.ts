// A bound on the responses being written at once, across every ADS stream (istiod's
// PILOT_PUSH_THROTTLE). A mesh change makes every stream's response at the same moment; without
// a bound, a thousand sidecars' encoded responses (~100 KiB each for 100 services) are built and
// queued at once, and that peak stays in the process's RSS. A stream holds a slot from building
// its response until its writer is resumed (connect asks for the next message once the previous
// is written) or it ends; a stream whose peer does not read gives its slot up after holdMs, so
// that a slow sidecar delays the others by at most that.

/** Timer functions (Node's, unref'd, by default; a fake clock's in tests). */
export interface PushTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface PushThrottle {
  /** Resolves with the release function once a slot is free (at once when one is). */
  acquire(): Promise<() => void>;
  /** Slots held now and streams waiting (for tests and metrics). */
  load(): { held: number; waiting: number };
}

export const DEFAULT_CONCURRENT_PUSHES = 100;
export const DEFAULT_PUSH_HOLD_MS = 1_000;

export function createPushThrottle(options: { max?: number; holdMs?: number; timers?: PushTimers } = {}): PushThrottle {
  const max = options.max ?? DEFAULT_CONCURRENT_PUSHES;
  const holdMs = options.holdMs ?? DEFAULT_PUSH_HOLD_MS;
  const timers: PushTimers = options.timers ?? { setTimeout: (f, ms) => setTimeout(f, ms).unref(), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
  if (!(max >= 1)) throw new RangeError(`concurrent pushes must be at least 1, got ${max}`);
  let held = 0;
  const waiting: Array<() => void> = [];
  const grant = (resolve: (release: () => void) => void) => {
    held++;
    let done = false;
    let timer: unknown;
    const release = () => {
      if (done) return;
      done = true;
      if (timer !== undefined) timers.clearTimeout(timer);
      held--;
      const next = waiting.shift();
      if (next) next();
    };
    timer = timers.setTimeout(release, holdMs);
    resolve(release);
  };
  return {
    acquire: () =>
      new Promise((resolve) => {
        if (held < max) grant(resolve);
        else waiting.push(() => grant(resolve));
      }),
    load: () => ({ held, waiting: waiting.length }),
  };
}
