// One SDS stream alone (no socket, no CA): the per-identity stream cap, and how a stream
// ends (the client's close, a refused request, the session ending it, a reader that does
// not keep up, shutdown), each time giving its slot back and leaving no trace behind.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Code, ConnectError } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { pino } from "pino";
import { Registry } from "prom-client";
import type { SecretCache } from "../../src/sds/index.js";
import { createSdsDebugView } from "../../src/sds/sds-debug-view.js";
import { createSdsMetrics } from "../../src/sds/sds-metrics.js";
import { createSdsStreamRunner, type SessionFactory } from "../../src/sds/sds-stream.js";
import { metricValue } from "./sds-harness.js";

function setup(opts: { perIdentityLimit?: number; queueLimit?: number } = {}) {
  const registry = new Registry();
  const metrics = createSdsMetrics(registry);
  const log = pino({ level: "silent" });
  const view = createSdsDebugView({ log, metrics });
  const sessions = { opened: 0, closed: 0 };
  const auth = {
    async authenticate(headers: Headers) {
      const sa = headers.get("x-sa");
      if (!sa) throw new ConnectError("missing workload token", Code.Unauthenticated);
      return { caller: { namespace: "foo", serviceAccount: sa, subject: "", expiresAt: undefined }, token: `token-${sa}` };
    },
  };
  // A session that greets on open, echoes requests, and on cue refuses, ends or floods the stream.
  const session: SessionFactory<string, string> = (ctx, id) => {
    sessions.opened++;
    ctx.send(`hello ${id}`, []);
    return {
      onRequest(r) {
        if (r === "bad") throw new ConnectError("unsupported type URL", Code.InvalidArgument);
        if (r === "revoke") return ctx.end(new ConnectError("token expired", Code.Unauthenticated));
        for (let i = 0; i < (r === "flood" ? 100 : 1); i++) ctx.send(`echo ${r}`, []);
      },
      names: () => ["default"],
      close: () => void sessions.closed++,
    };
  };
  const runner = createSdsStreamRunner({
    cache: { trustDomain: "cluster.local" } as SecretCache,
    auth,
    view,
    metrics,
    log,
    queueLimit: opts.queueLimit ?? 4,
    perIdentityLimit: opts.perIdentityLimit ?? 2,
  });
  const open = (sa: string | undefined) => {
    const ac = new AbortController();
    const requests = createWritableIterable<string>();
    const headers = new Headers(sa === undefined ? {} : { "x-sa": sa });
    const gen = runner.runStream<string, string>("StreamSecrets", requests, { requestHeader: headers, signal: ac.signal }, session);
    return { gen, ac, requests };
  };
  const openStreams = () => view.snapshot({ trustDomain: "cluster.local", identities: [], rootFingerprint: undefined }, "/sock", 0).streams.length;
  return { registry, sessions, open, openStreams };
}

/** Reads a stream to its end: the messages, and the error it failed with (if it did). */
async function drain(gen: AsyncGenerator<string>): Promise<{ got: string[]; error?: ConnectError }> {
  const got: string[] = [];
  try {
    for (;;) {
      const r = await gen.next();
      if (r.done) return { got };
      got.push(r.value);
    }
  } catch (e) {
    return { got, error: e as ConnectError };
  }
}

const caps: Array<[string, number, string[], Array<"open" | "refused">]> = [
  ["a third stream of one identity at a cap of 2 is refused; another identity is not", 2, ["a", "a", "a", "b"], ["open", "open", "refused", "open"]],
  ["at a cap of 1 each identity holds one", 1, ["a", "b", "a", "b", "c"], ["open", "open", "refused", "refused", "open"]],
];
for (const [name, limit, identities, expected] of caps) {
  test(name, async () => {
    const { open, registry } = setup({ perIdentityLimit: limit });
    const outcomes: string[] = [];
    for (const sa of identities) {
      const s = open(sa);
      const first = await s.gen.next().then(
        () => "open",
        (e: ConnectError) => {
          assert.is(e.code, Code.ResourceExhausted);
          assert.is(
            e.rawMessage,
            `too many open SDS streams for spiffe://cluster.local/ns/foo/sa/${sa} (${limit}, MAX_STREAMS_PER_IDENTITY): close some first`,
          );
          return "refused";
        },
      );
      outcomes.push(first);
    }
    assert.equal(outcomes, expected);
    const refused = expected.filter((o) => o === "refused").length;
    assert.is(await metricValue(registry, "meshkey_sds_streams_refused_total", { limit: "streams_per_identity" }), refused);
    assert.is(await metricValue(registry, "meshkey_sds_active_streams", { rpc: "StreamSecrets" }), expected.length - refused);
  });
}

test("a stream that ends gives its identity's slot back", async () => {
  const { open, sessions, openStreams } = setup({ perIdentityLimit: 1 });
  const a = open("a");
  await a.gen.next();
  await a.gen.return(undefined); // the client went away: connect returns the generator
  const again = open("a");
  assert.equal((await again.gen.next()).value, "hello s2");
  assert.equal([sessions.opened, sessions.closed, openStreams()], [2, 1, 1]);
});

test("an unauthenticated call fails before it holds a slot or opens a session", async () => {
  const { open, sessions, openStreams } = setup({ perIdentityLimit: 1 });
  const { error } = await drain(open(undefined).gen);
  assert.is(error?.code, Code.Unauthenticated);
  assert.equal([sessions.opened, openStreams()], [0, 0]);
});

type Stream = ReturnType<ReturnType<typeof setup>["open"]>;
const endings: Array<[string, (s: Stream) => void, { code?: Code; message?: string; pushErrors?: string }]> = [
  ["the client ends its requests: the stream ends cleanly", (s) => s.requests.close(), {}],
  ["a request the session refuses: that error", (s) => void s.requests.write("bad"), { code: Code.InvalidArgument, message: "unsupported type URL" }],
  ["the session ends the stream: its error, counted", (s) => void s.requests.write("revoke"), { code: Code.Unauthenticated, message: "token expired", pushErrors: "Unauthenticated" }],
  ["a reader that does not keep up: RESOURCE_EXHAUSTED, counted", (s) => void s.requests.write("flood"), { code: Code.ResourceExhausted, message: "outgoing queue full (4 messages, maxQueuedMessages): the client does not read", pushErrors: "ResourceExhausted" }],
  ["shutdown (the handler's signal aborts): UNAVAILABLE, so Envoy reconnects at once", (s) => s.ac.abort(), { code: Code.Unavailable, message: "SDS server shutting down, reconnect" }],
  ["an abort whose reason is a ConnectError: that error", (s) => s.ac.abort(new ConnectError("deadline exceeded", Code.DeadlineExceeded)), { code: Code.DeadlineExceeded, message: "deadline exceeded" }],
];
for (const [name, act, want] of endings) {
  test(name, async () => {
    const { open, registry, sessions, openStreams } = setup({ perIdentityLimit: 1 });
    const s = open("a");
    assert.is((await s.gen.next()).value, "hello s1");
    act(s);
    await new Promise((r) => setTimeout(r, 5)); // the request reader runs first
    const { error } = await drain(s.gen);
    assert.is(error?.code, want.code);
    if (want.message) assert.is(error!.rawMessage, want.message);
    assert.is(await metricValue(registry, "meshkey_sds_push_errors_total"), want.pushErrors ? 1 : 0);
    if (want.pushErrors) assert.is(await metricValue(registry, "meshkey_sds_push_errors_total", { code: want.pushErrors }), 1);
    assert.equal([sessions.closed, openStreams()], [1, 0], "session closed, stream gone from the debug view");
    assert.is(await metricValue(registry, "meshkey_sds_active_streams"), 0);
    s.requests.close();
    const next = open("a");
    assert.is((await next.gen.next()).value, "hello s2", "the slot was given back");
  });
}

test.run();
