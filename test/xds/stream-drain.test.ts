// Shutdown waits for in-flight ADS pushes: a stream is settled only once nothing is queued
// and every response it sent was ACKed or NACKed; settle() is bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DiscoveryRequestSchema, DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { node, snap, startHarness, TypeUrl, type Harness } from "./helpers/ads-client.js";

let h: Harness;
test.before.each(async () => {
  h = await startHarness();
});
test.after.each(async () => {
  await h.close();
});

const req = (typeUrl: string, prev?: DiscoveryResponse, extra: { versionInfo?: string; errorDetail?: { code: number; message: string } } = {}): MessageInitShape<typeof DiscoveryRequestSchema> => ({
  node: node(),
  typeUrl,
  versionInfo: prev?.versionInfo ?? "",
  responseNonce: prev?.nonce ?? "",
  ...extra,
});

test("a push that is not yet ACKed keeps settle() waiting until its deadline", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster));
  await s.next();
  assert.is(h.server.unsettledStreams(), 1);
  const t0 = Date.now();
  assert.is(await h.server.settle(150), false);
  assert.ok(Date.now() - t0 >= 140, "waited for the deadline");
});

test("settle() resolves as soon as the client ACKs the push in flight", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster));
  const r1 = await s.next();
  const settled = h.server.settle(5_000);
  await s.send(req(TypeUrl.Cluster, r1));
  assert.is(await settled, true);
  assert.is(h.server.unsettledStreams(), 0);
});

test("a NACK settles a push too (nothing more will come for it)", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Cluster, r1, { versionInfo: "", errorDetail: { code: 3, message: "bad" } }));
  assert.is(await h.server.settle(5_000), true);
});

test("a delta push is settled by its ACK", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Cluster, resourceNamesSubscribe: ["*"] });
  const r1 = await s.next();
  assert.is(h.server.unsettledStreams(), 1);
  await s.send({ node: node(), typeUrl: TypeUrl.Cluster, responseNonce: r1.nonce });
  assert.is(await h.server.settle(5_000), true);
});

test("with no stream open, settle() resolves at once", async () => {
  assert.is(await h.server.settle(5_000), true);
});

test.run();
