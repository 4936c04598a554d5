// The server-wide shutdown signal connect links every call to: O(1) per call, and it
// aborts what listens when the server shuts down.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createShutdownSignal } from "../../src/net/shutdown-signal.js";

test("abort calls every listener once, with the signal as this and its reason readable", () => {
  const s = createShutdownSignal();
  const seen: unknown[] = [];
  function listener(this: AbortSignal) {
    seen.push(this.reason);
  }
  s.signal.addEventListener("abort", listener);
  s.signal.addEventListener("abort", listener); // the same listener twice is one listener, as on EventTarget
  s.abort("bye");
  s.abort("again");
  assert.equal(seen, ["bye"]);
  assert.ok(s.signal.aborted);
  assert.is(s.listenerCount(), 0);
});

test("a removed listener is not called, and removal leaves nothing behind", () => {
  const s = createShutdownSignal();
  let called = 0;
  const listener = () => void called++;
  s.signal.addEventListener("abort", listener);
  s.signal.removeEventListener("abort", listener);
  assert.is(s.listenerCount(), 0);
  s.abort();
  assert.is(called, 0);
  assert.instance(s.signal.reason, DOMException);
});

test("100,000 calls link and unlink, and none is left behind", () => {
  const s = createShutdownSignal();
  const held = Array.from({ length: 100_000 }, () => () => {});
  for (const l of held) s.signal.addEventListener("abort", l);
  assert.is(s.listenerCount(), 100_000);
  for (const l of held) s.signal.removeEventListener("abort", l);
  assert.is(s.listenerCount(), 0);
});

test.run();
