// The bounded outgoing queue of a stream: order kept, overflow ends the stream with
// RESOURCE_EXHAUSTED instead of growing without bound, end() with an error fails it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Code, ConnectError } from "@connectrpc/connect";
import { createOutbox } from "../../src/sds/outbox.js";

async function drain<T>(it: AsyncIterable<T>): Promise<{ got: T[]; error?: ConnectError }> {
  const got: T[] = [];
  try {
    for await (const v of it) got.push(v);
    return { got };
  } catch (e) {
    return { got, error: e as ConnectError };
  }
}

test("messages come out in order and the stream ends cleanly on end()", async () => {
  const o = createOutbox<number>(4);
  const done = drain(o);
  o.push(1);
  o.push(2);
  await Promise.resolve();
  o.push(3);
  o.end();
  o.push(4); // after end: ignored
  assert.equal(await done, { got: [1, 2, 3] });
});

test("a reader that does not keep up ends the stream with RESOURCE_EXHAUSTED", async () => {
  const o = createOutbox<number>(3);
  for (let i = 0; i < 10; i++) o.push(i);
  const { error } = await drain(o);
  assert.is(error?.code, Code.ResourceExhausted);
  assert.match(error!.message, /outgoing queue full/);
});

test("end(error) fails the stream with that error", async () => {
  const o = createOutbox<number>(3);
  const done = drain(o);
  o.end(new ConnectError("token expired", Code.Unauthenticated));
  const { error } = await done;
  assert.is(error?.code, Code.Unauthenticated);
});

test("an overflow is reported once, so the server counts it in meshkey_sds_push_errors_total", () => {
  const reported: ConnectError[] = [];
  const box = createOutbox<number>(2, (e) => reported.push(e));
  for (let i = 0; i < 10; i++) box.push(i);
  assert.is(reported.length, 1);
  assert.is(reported[0]!.code, Code.ResourceExhausted);
  assert.match(reported[0]!.rawMessage, "maxQueuedMessages");
});

test.run();
