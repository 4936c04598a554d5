// Property test (fast-check) of the SotW ACK/NACK/nonce state machine: for any
// sequence of snapshot changes and client replies, a version is never sent twice in
// a row, nothing is resent after a NACK until the snapshot changes, and a client
// that finally ACKs ends up at the current version.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { pino } from "pino";
import { DiscoveryRequestSchema, DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { createSnapshotCache, createSyncTracker } from "../../src/xds/index.js";
import { sotwStream } from "../../src/xds/server/sotw.js";
import { snap, TypeUrl } from "./helpers/ads-client.js";

type Op = "change" | "same" | "ack" | "nack" | "stale";
const settle = async () => {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
};

async function run(ops: Op[]) {
  const cache = createSnapshotCache();
  let tag = 1;
  cache.setSnapshot("n", snap({ CDS: { a: "1" } }));
  const input = createWritableIterable<DiscoveryRequest>();
  const ac = new AbortController();
  const received: DiscoveryResponse[] = [];
  const gen = sotwStream(input, ac.signal, { watcher: cache, tracker: createSyncTracker(), logger: pino({ level: "silent" }) });
  const pump = (async () => {
    // As a client reads it: the server sends pre-encoded bodies (packed-resources.ts).
    for await (const r of gen) received.push(fromBinary(DiscoveryResponseSchema, toBinary(DiscoveryResponseSchema, r)));
  })();
  const send = (r: Partial<Pick<DiscoveryRequest, "versionInfo" | "responseNonce">> & { error?: string }) =>
    input.write(
      create(DiscoveryRequestSchema, {
        node: { id: "n" },
        typeUrl: TypeUrl.Cluster,
        versionInfo: r.versionInfo ?? "",
        responseNonce: r.responseNonce ?? "",
        ...(r.error ? { errorDetail: { code: 3, message: r.error } } : {}),
      }),
    );
  const current = () => cache.getSnapshot("n")!.get(TypeUrl.Cluster)!.version;
  await send({});
  await settle();
  let nackedAt: number | undefined; // received.length when the last NACK was sent
  let changedSinceNack = false;
  for (const op of ops) {
    const last = received.at(-1);
    if (op === "change") {
      cache.setSnapshot("n", snap({ CDS: { a: String(++tag) } }));
      changedSinceNack = true;
    } else if (op === "same") cache.setSnapshot("n", snap({ CDS: { a: String(tag) } }));
    else if (op === "ack" && last) await send({ versionInfo: last.versionInfo, responseNonce: last.nonce });
    else if (op === "nack" && last) {
      await send({ versionInfo: "", responseNonce: last.nonce, error: "rejected" });
      nackedAt = received.length;
      // Only when the NACKed version is still current must nothing follow.
      changedSinceNack = current() !== last.versionInfo;
    } else if (op === "stale") await send({ versionInfo: "x", responseNonce: "stale" });
    await settle();
    for (let i = 1; i < received.length; i++) {
      assert.is.not(received[i]!.versionInfo, received[i - 1]!.versionInfo, `version ${received[i]!.versionInfo} sent twice in a row`);
    }
    if (nackedAt !== undefined && !changedSinceNack) assert.is(received.length, nackedAt, "resent after a NACK without a snapshot change");
    if (op === "nack" && nackedAt !== undefined && changedSinceNack) assert.is(received.at(-1)!.versionInfo, current(), "a NACK of an outdated version gets the current one");
  }
  const last = received.at(-1)!;
  await send({ versionInfo: last.versionInfo, responseNonce: last.nonce });
  await settle();
  assert.is(received.at(-1)!.versionInfo, current(), "an ACKing client converges to the current version");
  ac.abort();
  input.close();
  await pump;
}

test("SotW: no version twice in a row, no resend after NACK, convergence after ACK (property)", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.constantFrom<Op>("change", "same", "ack", "nack", "stale"), { maxLength: 20 }), run),
    { numRuns: 150 },
  );
});

test.run();
