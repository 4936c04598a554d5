// When a workload certificate is renewed, and how long a failed issuance waits before
// the next attempt. Pure: times and a random number in, times out. The identity slot
// arms the timers.

/** The longest delay a Node timer holds: a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The shortest wait before a renewal, so that a CA handing out nearly expired certificates cannot make us spin. */
export const MIN_ROTATION_DELAY_MS = 1_000;

/** Spread (±) of the grace ratio, so that identities issued together do not renew together. */
export const GRACE_RATIO_JITTER = 0.01;

export interface RotationTimeInput {
  /** Validity of the certificate, ms since the epoch. */
  notBefore: number;
  notAfter: number;
  /** When it was issued. */
  now: number;
  /** Fraction of the lifetime left when the certificate is renewed, in (0, 1). */
  graceRatio: number;
  /** Uniform in [0, 1) (Math.random()). */
  random: number;
}

/** When to renew: at graceRatio (± GRACE_RATIO_JITTER) of the lifetime left before notAfter. */
export function rotationTime({ notBefore, notAfter, now, graceRatio, random }: RotationTimeInput): number {
  // Lifetime as seen from here: a CA that backdates notBefore (clock-skew allowance) does not
  // make the certificate renew earlier than graceRatio of the time it actually has left.
  const lifetime = notAfter - Math.max(notBefore, now);
  const ratio = graceRatio + (random * 2 - 1) * GRACE_RATIO_JITTER;
  return notAfter - ratio * lifetime;
}

/** How long the rotation timer waits: at least MIN_ROTATION_DELAY_MS, at most what a timer holds. */
export function rotationDelay(rotateAt: number, now: number): number {
  return Math.min(Math.max(MIN_ROTATION_DELAY_MS, rotateAt - now), MAX_TIMER_MS);
}

/**
 * Whether a rotation timer firing at `now` means "renew": false when the wait was longer than
 * a timer holds (arm it again). Within MIN_ROTATION_DELAY_MS counts as due, so that a timer
 * firing a little early does not postpone the renewal by another second.
 */
export function rotationDue(rotateAt: number, now: number): boolean {
  return rotateAt - now <= MIN_ROTATION_DELAY_MS;
}

export interface RetryDelayInput {
  /** Failed attempts since the last success, before this one (0 after the first failure). */
  attempt: number;
  initialMs: number;
  maxMs: number;
  /** Time left on the certificate being served (≤ 0: none, or expired). */
  validityLeftMs: number;
  /** Uniform in [0, 1) (Math.random()). */
  random: number;
}

/** Exponential backoff with jitter: initialMs doubling to maxMs, each wait drawn from [base/2, base). */
export function retryDelay({ attempt, initialMs, maxMs, validityLeftMs, random }: RetryDelayInput): number {
  let base = Math.min(maxMs, initialMs * 2 ** attempt);
  // Never sleep through the end of the served certificate: as expiry nears, retry more often
  // (at most a quarter of the validity left), so that a CA back just before expiry is used.
  if (validityLeftMs > 0) base = Math.min(base, Math.max(initialMs, validityLeftMs / 4));
  return Math.min(base / 2 + random * (base / 2), MAX_TIMER_MS);
}
