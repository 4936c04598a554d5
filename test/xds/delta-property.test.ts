// Property test (fast-check) of incremental ADS: whatever the order of snapshot
// changes, subscribes, unsubscribes, ACKs and stale nonces, a client that applies
// every response (updates, then removals) converges to the snapshot's resources
// it subscribed to, at their current versions.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { pino } from "pino";
import { DeltaDiscoveryRequestSchema, DeltaDiscoveryResponseSchema, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { createSnapshotCache, createSyncTracker } from "../../src/xds/index.js";
import { deltaStream } from "../../src/xds/server/delta.js";
import { snap, TypeUrl } from "./helpers/ads-client.js";

const NAMES = ["a", "b", "c", "d"] as const;
type Op =
  | { kind: "set"; present: boolean[]; tags: number[] }
  | { kind: "sub" | "unsub"; name: (typeof NAMES)[number] }
  | { kind: "ack" }
  | { kind: "sub-wildcard" | "unsub-wildcard" }
  | { kind: "stale-sub"; name: (typeof NAMES)[number] };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), present: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), tags: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 4, maxLength: 4 }) }),
  fc.record({ kind: fc.constantFrom("sub" as const, "unsub" as const), name: fc.constantFrom(...NAMES) }),
  fc.record({ kind: fc.constant("ack" as const) }),
  fc.record({ kind: fc.constantFrom("sub-wildcard" as const, "unsub-wildcard" as const) }),
  fc.record({ kind: fc.constant("stale-sub" as const), name: fc.constantFrom(...NAMES) }),
);

const settle = async () => {
  for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
};

async function run(startWildcard: boolean, ops: Op[]) {
  let wildcard = startWildcard;
  const cache = createSnapshotCache();
  let spec: Record<string, string> = { a: "0", b: "0" };
  cache.setSnapshot("n", snap({ CDS: spec }));
  const input = createWritableIterable<DeltaDiscoveryRequest>();
  const ac = new AbortController();
  const client = new Map<string, string>();
  const subscribed = new Set<string>();
  let last: DeltaDiscoveryResponse | undefined;
  const gen = deltaStream(input, ac.signal, { watcher: cache, tracker: createSyncTracker(), logger: pino({ level: "silent" }) });
  const pump = (async () => {
    for await (const sent of gen) {
      // As a client reads it: the server sends resources as ready-encoded bytes (packed-resources.ts).
      const r = fromBinary(DeltaDiscoveryResponseSchema, toBinary(DeltaDiscoveryResponseSchema, sent));
      for (const res of r.resources) client.set(res.name, res.version);
      for (const n of r.removedResources) client.delete(n);
      last = r;
    }
  })();
  const send = (m: Partial<Pick<DeltaDiscoveryRequest, "responseNonce" | "resourceNamesSubscribe" | "resourceNamesUnsubscribe">>) =>
    input.write(create(DeltaDiscoveryRequestSchema, { node: { id: "n" }, typeUrl: TypeUrl.Cluster, ...m }));
  await send({ resourceNamesSubscribe: wildcard ? [] : ["a"] });
  if (!wildcard) subscribed.add("a");
  await settle();
  for (const op of ops) {
    if (op.kind === "set") {
      spec = Object.fromEntries(NAMES.flatMap((n, i) => (op.present[i] ? [[n, String(op.tags[i])]] : [])));
      cache.setSnapshot("n", snap({ CDS: spec }));
    } else if (op.kind === "sub") {
      subscribed.add(op.name);
      await send({ responseNonce: last?.nonce ?? "", resourceNamesSubscribe: [op.name] });
    } else if (op.kind === "stale-sub") {
      subscribed.add(op.name);
      await send({ responseNonce: "stale", resourceNamesSubscribe: [op.name] });
    } else if (op.kind === "unsub") {
      subscribed.delete(op.name);
      if (!wildcard) client.delete(op.name);
      await send({ responseNonce: last?.nonce ?? "", resourceNamesUnsubscribe: [op.name] });
    } else if (op.kind === "sub-wildcard") {
      wildcard = true;
      await send({ responseNonce: last?.nonce ?? "", resourceNamesSubscribe: ["*"] });
    } else if (op.kind === "unsub-wildcard") {
      wildcard = false;
      for (const n of [...client.keys()]) if (!subscribed.has(n)) client.delete(n); // as Envoy drops them
      await send({ responseNonce: last?.nonce ?? "", resourceNamesUnsubscribe: ["*"] });
    } else if (last) await send({ responseNonce: last.nonce });
    await settle();
  }
  if (last) await send({ responseNonce: last.nonce });
  await settle();
  const versions = cache.getSnapshot("n")!.get(TypeUrl.Cluster)!.resources;
  const expected = [...versions.values()].filter((r) => wildcard || subscribed.has(r.name)).map((r) => [r.name, r.version]);
  const got = [...client.entries()].filter(([n]) => wildcard || subscribed.has(n)).sort();
  assert.equal(got, expected.sort());
  if (wildcard) assert.equal([...client.keys()].sort(), [...versions.keys()].sort());
  ac.abort();
  input.close();
  await pump;
}

test("delta: the client converges to the subscribed part of the snapshot (property)", async () => {
  await fc.assert(fc.asyncProperty(fc.boolean(), fc.array(opArb, { maxLength: 15 }), run), { numRuns: 200 });
});

test.run();
