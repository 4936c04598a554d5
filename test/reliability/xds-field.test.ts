// Field scenarios from go-control-plane's issue tracker, replayed against the real
// xDS server and snapshot cache (each test names its issue). What the sibling
// tests in test/xds/ already cover is not repeated here; these add the parts a
// field report was about: an old nonce must not count as an ACK or NACK, a NACK must
// survive unrelated snapshot changes, missing names must appear once they exist,
// names added on an existing stream by a cluster update, and 2,000 short-lived nodes
// must leave nothing behind in the cache, the tracker or the heap.
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { DeltaDiscoveryResponse, DiscoveryRequestSchema, DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { ConfigStatus } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { parseMesh } from "../../src/mesh/index.js";
import { createMeshController, createSnapshotCache } from "../../src/xds/index.js";
import { namesOf, node, snap, startHarness, TypeUrl, type Harness } from "../xds/helpers/ads-client.js";

let h: Harness;
test.before.each(async () => {
  h = await startHarness();
});
test.after.each(async () => {
  await h.close();
});

type Req = MessageInitShape<typeof DiscoveryRequestSchema>;
const req = (typeUrl: string, names: string[], prev?: { versionInfo: string; nonce: string }, extra: { errorDetail?: { code: number; message: string } } = {}): Req => ({
  node: node(),
  typeUrl,
  resourceNames: names,
  versionInfo: prev?.versionInfo ?? "",
  responseNonce: prev?.nonce ?? "",
  ...extra,
});
const typeStatus = (typeUrl: string) => h.server.syncStatus().find((n) => n.nodeId === "test-node")?.types.find((t) => t.typeUrl === typeUrl);

test("stale nonce ignored: a request with an old nonce neither ACKs, NACKs nor triggers a resend (go-control-plane server scenario)", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster, []));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Cluster, [], r1));
  await s.nothing(100);
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "2" } }));
  const r2 = await s.next();
  assert.is.not(r2.nonce, r1.nonce);
  // The client answers r2 with r1's nonce: claiming v2 as ACKed, then as NACKed.
  await s.send(req(TypeUrl.Cluster, [], { versionInfo: r2.versionInfo, nonce: r1.nonce }));
  await s.send(req(TypeUrl.Cluster, [], { versionInfo: r1.versionInfo, nonce: r1.nonce }, { errorDetail: { code: 3, message: "stale NACK" } }));
  await s.nothing();
  assert.equal([typeStatus(TypeUrl.Cluster)?.versionAcked, typeStatus(TypeUrl.Cluster)?.lastNack], [r1.versionInfo, null]);
  await s.send(req(TypeUrl.Cluster, [], r2));
  await s.nothing(100);
  assert.is(typeStatus(TypeUrl.Cluster)?.versionAcked, r2.versionInfo);
});

test("#962: a NACKed version is never resent while other types and re-sets change the snapshot; a changed one is sent", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" }, LDS: { l: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster, []));
  const c1 = await s.next();
  await s.send(req(TypeUrl.Listener, []));
  const l1 = await s.next();
  await s.send(req(TypeUrl.Listener, [], l1));
  await s.send(req(TypeUrl.Cluster, [], { versionInfo: "", nonce: c1.nonce }, { errorDetail: { code: 3, message: "cluster a: bad" } }));
  await s.nothing(100);
  // Same clusters, new listeners; then the very same snapshot again: only LDS moves.
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" }, LDS: { l: "2" } }));
  const l2 = await s.next();
  assert.is(l2.typeUrl, TypeUrl.Listener);
  await s.send(req(TypeUrl.Listener, [], l2));
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" }, LDS: { l: "2" } }));
  await s.nothing();
  assert.is(typeStatus(TypeUrl.Cluster)?.lastNack?.version, c1.versionInfo);
  // The fixed cluster goes out, once, with a new version; its ACK clears the error.
  const fixed = snap({ CDS: { a: "3" }, LDS: { l: "2" } });
  h.cache.setSnapshot("test-node", fixed);
  const c2 = await s.next();
  assert.equal([c2.typeUrl, namesOf(c2, fixed)], [TypeUrl.Cluster, ["a"]]);
  assert.is.not(c2.versionInfo, c1.versionInfo);
  await s.send(req(TypeUrl.Cluster, [], c2));
  await s.nothing(150);
  const res = await h.csds.fetchClientStatus({ node: { id: "test-node" } });
  const a = res.config[0]!.genericXdsConfigs.find((g) => g.name === "a")!;
  assert.is(a.configStatus, ConfigStatus.SYNCED);
});

test("CSDS reports a NACK for a node as ERROR with the client's message and the rejected version, other nodes untouched", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  h.cache.setSnapshot("other", snap({ CDS: { b: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster, []));
  const r1 = await s.next();
  const o = h.sotw();
  await o.send({ node: { id: "other" }, typeUrl: TypeUrl.Cluster });
  const o1 = await o.next();
  await o.send({ node: { id: "other" }, typeUrl: TypeUrl.Cluster, versionInfo: o1.versionInfo, responseNonce: o1.nonce });
  await s.send(req(TypeUrl.Cluster, [], { versionInfo: "", nonce: r1.nonce }, { errorDetail: { code: 3, message: "cluster a: unknown field foo" } }));
  await s.nothing(150);
  const res = await h.csds.fetchClientStatus({});
  const byNode = new Map(res.config.map((c) => [c.node?.id, c.genericXdsConfigs[0]!]));
  const nacked = byNode.get("test-node")!;
  assert.equal(
    [nacked.configStatus, nacked.errorState?.details, nacked.errorState?.versionInfo],
    [ConfigStatus.ERROR, "cluster a: unknown field foo", r1.versionInfo],
  );
  assert.equal([byNode.get("other")!.configStatus, byNode.get("other")!.errorState], [ConfigStatus.SYNCED, undefined]);
});

test("#426: a named subset is answered with what exists at once, and a missing name is sent when it appears (SotW and delta)", async () => {
  const s1 = snap({ EDS: { a: "1" } });
  h.cache.setSnapshot("test-node", s1);
  const s = h.sotw();
  await s.send(req(TypeUrl.Endpoint, ["a", "later"]));
  const r1 = await s.next(1000);
  assert.equal(namesOf(r1, s1), ["a"]);
  await s.send(req(TypeUrl.Endpoint, ["a", "later"], r1));
  const d = h.delta();
  await d.send({ node: { id: "test-node" }, typeUrl: TypeUrl.Endpoint, resourceNamesSubscribe: ["a", "later"] });
  const d1 = await d.next(1000);
  assert.equal(d1.resources.map((r) => r.name), ["a"]);
  await d.send({ typeUrl: TypeUrl.Endpoint, responseNonce: d1.nonce });
  await s.nothing(100);
  await d.nothing(1);
  const s2 = snap({ EDS: { a: "1", later: "1" } });
  h.cache.setSnapshot("test-node", s2);
  // SotW EDS is answered per resource: the client holds "a" at this version, so only "later" comes.
  assert.equal(namesOf(await s.next(), s2), ["later"]);
  const d2: DeltaDiscoveryResponse = await d.next();
  assert.equal(d2.resources.map((r) => r.name), ["later"]);
});

test("#399: EDS names a new cluster brings, requested on the existing stream, are sent at once (mesh controller)", async () => {
  const cache = createSnapshotCache();
  const own = await startHarness(cache);
  const mesh = (extra: string) => `services:
  - name: echo
    namespace: foo
    ports: [{name: grpc, port: 7070, protocol: GRPC}]
    endpoints: [{address: 10.0.0.1, port: 7070}]
${extra}`;
  const controller = createMeshController({ cache, mesh: parseMesh(mesh("")), translate: { trustDomain: "cluster.local", sdsSocketPath: "/s", tokenPath: "/t" } });
  try {
    const n = { id: "proxyless-1", metadata: { GENERATOR: "grpc" } };
    const s = own.sotw();
    await s.send({ node: n, typeUrl: TypeUrl.Cluster });
    const c1 = await s.next();
    await s.send({ node: n, typeUrl: TypeUrl.Cluster, versionInfo: c1.versionInfo, responseNonce: c1.nonce });
    const eds1 = "outbound|7070||echo.foo.svc.cluster.local";
    await s.send({ node: n, typeUrl: TypeUrl.Endpoint, resourceNames: [eds1] });
    const e1 = await s.next();
    await s.send({ node: n, typeUrl: TypeUrl.Endpoint, resourceNames: [eds1], versionInfo: e1.versionInfo, responseNonce: e1.nonce });
    await s.nothing(100);
    assert.equal(controller.setMesh(parseMesh(mesh(`  - name: second
    namespace: foo
    ports: [{name: grpc, port: 9090, protocol: GRPC}]
    endpoints: [{address: 10.0.0.2, port: 9090}]
`))), []);
    const c2 = await s.next();
    assert.is(c2.typeUrl, TypeUrl.Cluster);
    assert.is(c2.resources.length, 2);
    await s.send({ node: n, typeUrl: TypeUrl.Cluster, versionInfo: c2.versionInfo, responseNonce: c2.nonce });
    // EDS's type version moved too (it holds the new load assignment): the client is told the new
    // version, without its unchanged assignment again (SotW EDS is per resource), and answers with
    // the new cluster's name added, as Envoy does after CDS.
    const ep = await s.next();
    assert.equal([ep.typeUrl, ep.resources.length], [TypeUrl.Endpoint, 0]);
    const eds2 = "outbound|9090||second.foo.svc.cluster.local";
    await s.send({ node: n, typeUrl: TypeUrl.Endpoint, resourceNames: [eds1, eds2], versionInfo: ep.versionInfo, responseNonce: ep.nonce });
    const e2: DiscoveryResponse = await s.next(1000);
    assert.is(e2.typeUrl, TypeUrl.Endpoint);
    assert.equal([e2.versionInfo, e2.resources.length], [ep.versionInfo, 1]); // the new name only
  } finally {
    controller.close();
    await own.close();
  }
});

test("#597: 2,000 streams of distinct nodes, opened and closed, leave no watch, node, snapshot or sync entry, and the heap returns near baseline", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const cache = createSnapshotCache();
  const own = await startHarness(cache);
  const controller = createMeshController({ cache, translate: { trustDomain: "cluster.local", sdsSocketPath: "/s", tokenPath: "/t" } });
  const nodeId = (i: number) => `sidecar~10.1.${i >> 8}.${i & 255}~sleep-${i}.foo~foo.svc.cluster.local`;
  const round = async (from: number, count: number, batch: number) => {
    for (let b = from; b < from + count; b += batch) {
      // Each stream asks for CDS and LDS, waits for both answers (its node now has a snapshot and the
      // stream a watch per type), then hangs up. Nothing of the streams is kept on this side.
      // One HTTP/2 connection per batch, as each Envoy has its own (nghttp2 limits the stream resets
      // one connection may send, and every hang-up here is one).
      const sessions = new Http2SessionManager(`http://${own.server.address}`);
      const ads = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${own.server.address}`, sessionManager: sessions }));
      const hold: Array<() => void> = [];
      await Promise.all(
        Array.from({ length: Math.min(batch, from + count - b) }, async (_, k) => {
          const id = nodeId(b + k);
          const input = createWritableIterable<Req>();
          const abort = new AbortController();
          const it = ads.streamAggregatedResources(input, { signal: abort.signal })[Symbol.asyncIterator]();
          void input.write({ node: { id }, typeUrl: TypeUrl.Cluster }).catch(() => {});
          void input.write({ node: { id }, typeUrl: TypeUrl.Listener }).catch(() => {});
          for (let t = 0; t < 2; t++) {
            const r = await it.next();
            assert.ok(!r.done && r.value.resources.length > 0);
            void input.write({ typeUrl: r.value.typeUrl, versionInfo: r.value.versionInfo, responseNonce: r.value.nonce }).catch(() => {}); // ACK: a watch waits
          }
          hold.push(() => {
            input.close();
            abort.abort();
            void it.next().catch(() => {});
          });
        }),
      );
      assert.ok(cache.connectedNodes().length >= hold.length && cache.nodeIds().length >= hold.length);
      for (const close of hold) close();
      setTimeout(() => sessions.abort(), 200);
    }
    const end = Date.now() + 10_000;
    while ((cache.connectedNodes().length > 0 || cache.watchCount() > 0 || own.server.syncStatus().length > 0) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await round(0, 200, 100); // warm-up: code paths, HTTP/2 session, translation memo
    gc();
    const before = process.memoryUsage().heapUsed;
    await round(200, 2000, 200);
    assert.equal(
      { nodes: cache.connectedNodes().length, snapshots: cache.nodeIds().length, watches: cache.watchCount(), tracked: own.server.syncStatus().length },
      { nodes: 0, snapshots: 0, watches: 0, tracked: 0 },
    );
    assert.is(controller.configDump(nodeId(1234)), undefined);
    assert.is(controller.knownNodeCount(), 0);
    await new Promise((r) => setTimeout(r, 400)); // the last batch's connection is gone
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    assert.ok(grown < 6 * 1024 * 1024, `heap grew by ${(grown / 1048576).toFixed(1)} MiB after 2,000 closed streams`);
  } finally {
    controller.close();
    await own.close();
  }
});

test.run();
