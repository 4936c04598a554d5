// The bound on responses being written at once across ADS streams.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createPushThrottle } from "../../src/xds/server/push-throttle.js";
import { createFakeClock } from "../support/fake-clock.js";

const settle = () => new Promise((r) => setImmediate(r));

test("no more than max slots are held; a release lets the next waiter in, in order", async () => {
  const clock = createFakeClock();
  const t = createPushThrottle({ max: 2, timers: clock });
  const got: number[] = [];
  const releases: Array<() => void> = [];
  for (let i = 0; i < 4; i++) void t.acquire().then((r) => (got.push(i), releases.push(r)));
  await settle();
  assert.equal([got, t.load()], [[0, 1], { held: 2, waiting: 2 }]);
  releases[0]!();
  releases[0]!(); // a second call of one release frees nothing more
  await settle();
  assert.equal([got, t.load()], [[0, 1, 2], { held: 2, waiting: 1 }]);
});

test("a slot not released within holdMs is given up, so a stream that is not read delays the others by that much", async () => {
  const clock = createFakeClock();
  const t = createPushThrottle({ max: 1, holdMs: 1_000, timers: clock });
  await t.acquire(); // never released: its peer does not read
  let second = false;
  void t.acquire().then(() => (second = true));
  clock.advance(999);
  await settle();
  assert.is(second, false);
  clock.advance(1);
  await settle();
  assert.is(second, true);
});

test("a release before holdMs clears its timer", async () => {
  const clock = createFakeClock();
  const t = createPushThrottle({ max: 1, holdMs: 1_000, timers: clock });
  const release = await t.acquire();
  assert.is(clock.pending(), 1);
  release();
  assert.is(clock.pending(), 0);
});

test("max below 1 is refused", () => {
  assert.throws(() => createPushThrottle({ max: 0 }), /at least 1/);
});

test.run();
