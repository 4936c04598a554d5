// The bound on issuances in flight: how many run at once, who goes first, and that every
// grant comes in a fresh macrotask.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createIssuanceQueue, type IssuancePriority } from "../../src/sds/issuance-queue.js";

const macrotask = () => new Promise<void>((r) => setImmediate(r));

/** Acquires in order, recording the label of each grant as it comes. */
function acquireAll(queue: ReturnType<typeof createIssuanceQueue>, asks: Array<[string, IssuancePriority]>) {
  const granted: string[] = [];
  const releases = new Map<string, () => void>();
  for (const [label, priority] of asks) {
    void queue.acquire(priority).then((release) => {
      granted.push(label);
      releases.set(label, release);
    });
  }
  return { granted, release: (label: string) => releases.get(label)!() };
}

test("no more than maxConcurrent run at once; a release lets the next one in", async () => {
  const queue = createIssuanceQueue(2);
  const { granted, release } = acquireAll(queue, [["a", "renewal"], ["b", "renewal"], ["c", "renewal"], ["d", "renewal"]]);
  await macrotask();
  assert.equal(granted, ["a", "b"]);
  assert.is(queue.running, 2);
  assert.is(queue.waiting, 2);
  release("a");
  await macrotask();
  assert.equal(granted, ["a", "b", "c"]);
  assert.is(queue.running, 2);
  release("b");
  release("c");
  await macrotask();
  assert.equal(granted, ["a", "b", "c", "d"]);
  release("d");
  assert.is(queue.running, 0);
  assert.is(queue.waiting, 0);
});

test("a workload waiting for its first certificate goes ahead of renewals already queued", async () => {
  const queue = createIssuanceQueue(1);
  const { granted, release } = acquireAll(queue, [["renewal-1", "renewal"], ["renewal-2", "renewal"], ["renewal-3", "renewal"], ["first", "first"]]);
  await macrotask();
  assert.equal(granted, ["renewal-1"]);
  release("renewal-1");
  await macrotask();
  assert.equal(granted, ["renewal-1", "first"]);
  release("first");
  await macrotask();
  release("renewal-2");
  await macrotask();
  assert.equal(granted, ["renewal-1", "first", "renewal-2", "renewal-3"]);
  release("renewal-3");
});

test("a grant comes in a fresh macrotask, never in the acquirer's microtasks", async () => {
  const queue = createIssuanceQueue(8);
  let granted = false;
  void queue.acquire("first").then((release) => {
    granted = true;
    release();
  });
  for (let i = 0; i < 20; i++) await Promise.resolve();
  assert.not.ok(granted, "granted before the event loop turned");
  await macrotask();
  assert.ok(granted);
});

test("releasing twice frees one place only", async () => {
  const queue = createIssuanceQueue(1);
  const { granted, release } = acquireAll(queue, [["a", "first"], ["b", "first"], ["c", "first"]]);
  await macrotask();
  release("a");
  release("a");
  await macrotask();
  assert.equal(granted, ["a", "b"]);
  assert.is(queue.running, 1);
  release("b");
  await macrotask();
  release("c");
});

for (const max of [0, -1, Number.NaN]) {
  test(`maxConcurrentIssuance ${max} is refused`, () => {
    assert.throws(() => createIssuanceQueue(max), /maxConcurrentIssuance must be at least 1/);
  });
}

test.run();
