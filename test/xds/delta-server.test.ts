// Incremental ADS against the real server and cache: per-resource versions,
// initial_resource_versions, subscribe / unsubscribe, wildcard, removals last.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Code, ConnectError } from "@connectrpc/connect";
import type { DeltaDiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { node, snap, startHarness, TypeUrl, type Harness } from "./helpers/ads-client.js";

let h: Harness;
test.before.each(async () => {
  h = await startHarness();
});
test.after.each(async () => {
  await h.close();
});

const names = (r: DeltaDiscoveryResponse) => r.resources.map((x) => x.name);
const ack = (r: DeltaDiscoveryResponse) => ({ typeUrl: r.typeUrl, responseNonce: r.nonce });

test("a wildcard client gets every resource with its version; an ACK sends nothing", async () => {
  const s1 = snap({ CDS: { a: "1", b: "1" } });
  h.cache.setSnapshot("test-node", s1);
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Cluster });
  const r = await s.next();
  assert.equal(names(r), ["a", "b"]);
  assert.equal(r.resources.map((x) => x.version), [s1.get(TypeUrl.Cluster)!.resources.get("a")!.version, s1.get(TypeUrl.Cluster)!.resources.get("b")!.version]);
  await s.send(ack(r));
  await s.nothing();
});

test("only changed resources are sent, and removals come after the updates", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1", b: "1", c: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Cluster, resourceNamesSubscribe: ["*"] });
  await s.send(ack(await s.next()));
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "2", c: "1" } }));
  const u = await s.next();
  assert.equal([names(u), u.removedResources], [["a"], []]);
  const rm = await s.next();
  assert.equal([names(rm), rm.removedResources], [[], ["b"]]);
});

test("initial_resource_versions: what the client already has is not sent again", async () => {
  const s1 = snap({ CDS: { a: "1", b: "1" } });
  h.cache.setSnapshot("test-node", s1);
  const s = h.delta();
  await s.send({
    node: node(),
    typeUrl: TypeUrl.Cluster,
    initialResourceVersions: { a: s1.get(TypeUrl.Cluster)!.resources.get("a")!.version, gone: "x" },
  });
  const r = await s.next();
  assert.equal(names(r), ["b"]);
  const rm = await s.next();
  assert.equal(rm.removedResources, ["gone"]);
});

test("subscribe adds names one by one; unsubscribe stops updates of that name", async () => {
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "1", b: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Endpoint, resourceNamesSubscribe: ["a"] });
  const r1 = await s.next();
  assert.equal(names(r1), ["a"]);
  await s.send({ ...ack(r1), resourceNamesSubscribe: ["b"] });
  const r2 = await s.next();
  assert.equal(names(r2), ["b"]);
  await s.send({ ...ack(r2), resourceNamesUnsubscribe: ["a"] });
  await s.nothing(150);
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "2", b: "1" } }));
  await s.nothing();
});

test("a named resource that disappears is reported in removed_resources", async () => {
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "1", b: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Endpoint, resourceNamesSubscribe: ["a"] });
  await s.send(ack(await s.next()));
  h.cache.setSnapshot("test-node", snap({ EDS: { b: "2" } }));
  const r = await s.next();
  assert.equal([names(r), r.removedResources], [[], ["a"]]);
});

test("a stale nonce never blocks a subscription change", async () => {
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "1", b: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Endpoint, resourceNamesSubscribe: ["a"] });
  await s.next();
  await s.send({ typeUrl: TypeUrl.Endpoint, responseNonce: "stale-nonce", resourceNamesSubscribe: ["b"] });
  assert.equal(names(await s.next()), ["b"]);
});

test("a NACK is recorded and the rejected version is not resent", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Cluster });
  const r = await s.next();
  await s.send({ ...ack(r), errorDetail: { code: 3, message: "nope" } });
  await s.nothing();
  const st = h.server.syncStatus()[0]!;
  assert.is(st.protocol, "delta");
  assert.is(st.types[0]!.lastNack?.message, "nope");
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "2" } }));
  assert.equal(names(await s.next()), ["a"]);
});

test("unsubscribing from the wildcard keeps only the named resources", async () => {
  h.cache.setSnapshot("test-node", snap({ LDS: { a: "1", b: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Listener, resourceNamesSubscribe: ["*", "a"] });
  const r1 = await s.next();
  assert.equal(names(r1), ["a", "b"]);
  await s.send({ ...ack(r1), resourceNamesUnsubscribe: ["*"] });
  await s.nothing(150);
  h.cache.setSnapshot("test-node", snap({ LDS: { a: "2", b: "2" } }));
  assert.equal(names(await s.next()), ["a"]);
  await s.nothing(150);
});

test("after leaving the wildcard, subscribing to a name it had given sends that resource again", async () => {
  h.cache.setSnapshot("test-node", snap({ LDS: { a: "1", b: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Listener });
  const r1 = await s.next();
  await s.send({ ...ack(r1), resourceNamesUnsubscribe: ["*"] });
  await s.nothing(150);
  await s.send({ typeUrl: TypeUrl.Listener, resourceNamesSubscribe: ["a"] });
  assert.equal(names(await s.next()), ["a"]);
});

test("under the wildcard, unsubscribing one name still reports its removal later", async () => {
  h.cache.setSnapshot("test-node", snap({ LDS: { a: "1", b: "1" } }));
  const s = h.delta();
  await s.send({ node: node(), typeUrl: TypeUrl.Listener });
  const r1 = await s.next();
  await s.send({ ...ack(r1), resourceNamesUnsubscribe: ["a"] });
  await s.nothing(150);
  h.cache.setSnapshot("test-node", snap({ LDS: { b: "1" } }));
  assert.equal((await s.next()).removedResources, ["a"]);
});

test("an empty type_url fails a delta stream with INVALID_ARGUMENT", async () => {
  const s = h.delta();
  await s.send({ node: node(), typeUrl: "" });
  const err = await s.failure();
  assert.instance(err, ConnectError);
  assert.is((err as ConnectError).code, Code.InvalidArgument);
});

test.run();
