// When a certificate is renewed and how long a failed issuance waits: the pure rules,
// one table each.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  MAX_TIMER_MS,
  MIN_ROTATION_DELAY_MS,
  retryDelay,
  rotationDelay,
  rotationDue,
  rotationTime,
  type RetryDelayInput,
  type RotationTimeInput,
} from "../../src/sds/rotation-policy.js";

const HOUR = 3_600_000;
const T0 = Date.parse("2025-01-01T00:00:00Z");

// [what a user sees, input, expected rotateAt]
const rotations: Array<[string, RotationTimeInput, number]> = [
  ["half the lifetime left with graceRatio 0.5 and no jitter", { notBefore: T0, notAfter: T0 + 2 * HOUR, now: T0, graceRatio: 0.5, random: 0.5 }, T0 + HOUR],
  ["graceRatio 0.3: renewed with 30 % of the lifetime left", { notBefore: T0, notAfter: T0 + 10 * HOUR, now: T0, graceRatio: 0.3, random: 0.5 }, T0 + 7 * HOUR],
  ["the lowest jitter draw renews 1 % of the lifetime later", { notBefore: T0, notAfter: T0 + 100 * HOUR, now: T0, graceRatio: 0.5, random: 0 }, T0 + 51 * HOUR],
  ["the highest jitter draw renews 1 % of the lifetime earlier", { notBefore: T0, notAfter: T0 + 100 * HOUR, now: T0, graceRatio: 0.5, random: 1 }, T0 + 49 * HOUR],
  [
    "a backdated notBefore (clock-skew allowance) does not renew earlier: the lifetime counts from now",
    { notBefore: T0 - 5 * HOUR, notAfter: T0 + 2 * HOUR, now: T0, graceRatio: 0.5, random: 0.5 },
    T0 + HOUR,
  ],
  [
    "a notBefore in the future counts from notBefore",
    { notBefore: T0 + 2 * HOUR, notAfter: T0 + 4 * HOUR, now: T0, graceRatio: 0.5, random: 0.5 },
    T0 + 3 * HOUR,
  ],
];
for (const [name, input, expected] of rotations) {
  test(`rotation time: ${name}`, () => {
    assert.ok(Math.abs(rotationTime(input) - expected) < 1e-3, `${new Date(rotationTime(input)).toISOString()} ≠ ${new Date(expected).toISOString()}`);
  });
}

// [what a user sees, rotateAt − now, expected timer delay]
const delays: Array<[string, number, number]> = [
  ["an hour away: the timer waits an hour", HOUR, HOUR],
  ["already past: at least a second, so that nearly expired certificates cannot make us spin", -HOUR, MIN_ROTATION_DELAY_MS],
  ["half a second away: a second", 500, MIN_ROTATION_DELAY_MS],
  ["100 days away: clamped to what a timer holds", 100 * 24 * HOUR, MAX_TIMER_MS],
];
for (const [name, ahead, expected] of delays) {
  test(`rotation timer: ${name}`, () => {
    assert.is(rotationDelay(T0 + ahead, T0), expected);
  });
}

// [what a user sees, rotateAt − now when the timer fires, due?]
const firings: Array<[string, number, boolean]> = [
  ["on time: renew", 0, true],
  ["after rotateAt: renew", -5_000, true],
  ["a little early (within the 1 s minimum): renew", 3, true],
  ["a clamped timer far from rotateAt: arm again", 1.5 * MAX_TIMER_MS, false],
  ["a clamped timer 2 s before rotateAt: arm again", 2_000, false],
];
for (const [name, ahead, due] of firings) {
  test(`rotation timer fired: ${name}`, () => {
    assert.is(rotationDue(T0 + ahead, T0), due);
  });
}

const base: RetryDelayInput = { attempt: 0, initialMs: 200, maxMs: 30_000, validityLeftMs: 0, random: 0 };
// [what a user sees, input, lowest and highest delay over the jitter draws]
const retries: Array<[string, Partial<RetryDelayInput>, number, number]> = [
  ["the first retry waits between half the initial delay and the initial delay", {}, 100, 200],
  ["each failure doubles the wait", { attempt: 1 }, 200, 400],
  ["…and again", { attempt: 3 }, 800, 1_600],
  ["up to maxMs", { attempt: 20 }, 15_000, 30_000],
  ["with 8 s of validity left, at most a quarter of it (2 s), not 30 s", { attempt: 20, validityLeftMs: 8_000 }, 1_000, 2_000],
  ["the quarter of validity never goes under the initial delay", { attempt: 20, validityLeftMs: 400 }, 100, 200],
  ["an expired certificate does not cap the wait", { attempt: 20, validityLeftMs: -60_000 }, 15_000, 30_000],
  ["a validity cap above the doubled wait changes nothing", { attempt: 1, validityLeftMs: HOUR }, 200, 400],
  ["a maxMs longer than a timer holds is clamped", { attempt: 40, initialMs: 1_000, maxMs: 10 * MAX_TIMER_MS }, MAX_TIMER_MS, MAX_TIMER_MS],
];
for (const [name, input, low, high] of retries) {
  test(`retry backoff: ${name}`, () => {
    const at = (random: number) => retryDelay({ ...base, ...input, random });
    assert.is(at(0), low, "lowest draw");
    assert.ok(at(0.999999) <= high && at(0.999999) >= (low + high) / 2, `highest draw ${at(0.999999)}`);
  });
}

test.run();
