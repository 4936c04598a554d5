// The StreamSecrets state machine alone, over a fake cache (no gRPC, no CA), checked
// with fast-check against random sequences of renewals, ACKs, NACKs and stale nonces.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fc from "fast-check";
import { create } from "@bufbuild/protobuf";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
  type DeltaDiscoveryResponse,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import type { ConnectError } from "@connectrpc/connect";
import { createSotwSession } from "../../src/sds/sotw-session.js";
import { createDeltaSession } from "../../src/sds/delta-session.js";
import type { SessionContext } from "../../src/sds/stream-subscriptions.js";
import { type SecretCache, type SecretItem, type WatchCallbacks } from "../../src/sds/index.js";
import { SECRET_TYPE_URL } from "../../src/spiffe/index.js";

/** A cache whose secrets change when the test says so. */
function fakeCache(names: string[]) {
  const versions = new Map<string, number>(names.map((n) => [n, 1]));
  const watchers = new Map<string, Set<WatchCallbacks>>();
  const item = (name: string): SecretItem => ({ name, kind: "validationContext", version: `v${versions.get(name)}`, trustedCaPem: "x" });
  const cache = {
    trustDomain: "cluster.local",
    resolve: (_c: unknown, name: string) => (versions.has(name) ? "validationContext" : undefined),
    watch(_c: unknown, _t: string, name: string, cb: WatchCallbacks) {
      if (!versions.has(name)) return undefined;
      const set = watchers.get(name) ?? new Set();
      watchers.set(name, set);
      set.add(cb);
      return { name, kind: "validationContext", spiffeId: "spiffe://x", current: () => item(name), cancel: () => set.delete(cb) };
    },
  } as unknown as SecretCache;
  return {
    cache,
    version: (name: string) => `v${versions.get(name)}`,
    bump(name: string) {
      versions.set(name, versions.get(name)! + 1);
      for (const cb of watchers.get(name) ?? []) cb.onUpdate(item(name));
    },
    watcherCount: () => [...watchers.values()].reduce((a, s) => a + s.size, 0),
  };
}

function context(cache: SecretCache) {
  const sent: Array<{ res: DiscoveryResponse; items: readonly SecretItem[] }> = [];
  const ended: ConnectError[] = [];
  const ctx: SessionContext<DiscoveryResponse> = {
    cache,
    caller: { namespace: "foo", serviceAccount: "bar", subject: "", expiresAt: undefined },
    token: "t",
    send: (res, items) => sent.push({ res, items }),
    end: (e) => ended.push(e),
    onNack: () => {},
    onUnknownName: () => {},
  };
  return { ctx, sent, ended };
}

const req = (names: string[], nonce = "", error?: string) =>
  create(DiscoveryRequestSchema, {
    typeUrl: SECRET_TYPE_URL,
    resourceNames: names,
    responseNonce: nonce,
    ...(error ? { errorDetail: { code: 13, message: error } } : {}),
  });

type Op = { op: "bump"; name: string } | { op: "ack" } | { op: "nack" } | { op: "stale" };
const NAMES = ["ROOTCA", "spiffe://cluster.local"];
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("bump" as const), name: fc.constantFrom(...NAMES) }),
  fc.constant({ op: "ack" as const }),
  fc.constant({ op: "nack" as const }),
  fc.constant({ op: "stale" as const }),
);

test("property: one response in flight at most, never a NACKed version again, nothing left behind after an ACK", () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
      const fake = fakeCache(NAMES);
      const { ctx, sent } = context(fake.cache);
      const session = createSotwSession(ctx, "s");
      session.onRequest(req(NAMES));
      assert.is(sent.length, 1, "the initial request is answered at once");
      let inFlight = true;
      const nacked = new Set<string>();
      const nonces = new Set<string>([sent[0]!.res.nonce]);
      for (const op of ops) {
        const before = sent.length;
        const last = sent[sent.length - 1]!;
        if (op.op === "bump") fake.bump(op.name);
        else if (op.op === "stale") session.onRequest(req(NAMES, "s-999999"));
        else if (inFlight) {
          if (op.op === "nack") for (const it of last.items) nacked.add(`${it.name}@${it.version}`);
          session.onRequest(req(NAMES, last.res.nonce, op.op === "nack" ? "rejected" : undefined));
          inFlight = false;
        }
        const fresh = sent.slice(before);
        if (op.op === "bump" || op.op === "stale") {
          if (inFlight) assert.is(fresh.length, 0, "nothing is sent while a response is un-ACKed");
        }
        assert.ok(fresh.length <= 1);
        for (const f of fresh) {
          assert.not.ok(nonces.has(f.res.nonce), "nonces are unique");
          nonces.add(f.res.nonce);
          for (const it of f.items) {
            assert.not.ok(nacked.has(`${it.name}@${it.version}`), "a NACKed version is never resent");
            assert.is(it.version, fake.version(it.name), "always the latest version");
          }
          inFlight = true;
        }
        if (!inFlight) {
          // Idle: every name the client does not have in its latest version was NACKed in that version.
          const has = new Map<string, string>();
          for (const s of sent) for (const it of s.items) has.set(it.name, it.version);
          for (const n of NAMES) {
            const v = fake.version(n);
            assert.ok(has.get(n) === v || nacked.has(`${n}@${v}`), `${n} ${v} left behind`);
          }
        }
      }
      session.close();
      assert.is(fake.watcherCount(), 0, "watches released on close");
    }),
    { numRuns: 300 },
  );
});

test("SotW: dropping a name from the request releases its watch", () => {
  const fake = fakeCache(NAMES);
  const { ctx } = context(fake.cache);
  const session = createSotwSession(ctx, "s");
  session.onRequest(req(NAMES));
  assert.is(fake.watcherCount(), 2);
  session.onRequest(req(["ROOTCA"]));
  assert.is(fake.watcherCount(), 1);
  assert.equal(session.names(), ["ROOTCA"]);
  session.close();
});

test("more than 64 names on one stream is refused with RESOURCE_EXHAUSTED", () => {
  const fake = fakeCache(NAMES);
  const { ctx } = context(fake.cache);
  const session = createSotwSession(ctx, "s");
  const names = Array.from({ length: 65 }, (_, i) => `n${i}`);
  assert.throws(() => session.onRequest(req(names)), (e: ConnectError) => /too many secret names/.test(e.message));
  session.close();
  const delta = createDeltaSession(context(fake.cache).ctx as unknown as SessionContext<DeltaDiscoveryResponse>, "d");
  const subscribe = create(DeltaDiscoveryRequestSchema, { typeUrl: SECRET_TYPE_URL, resourceNamesSubscribe: names });
  assert.throws(() => delta.onRequest(subscribe), /too many secret names/);
  delta.close();
});

test.run();
