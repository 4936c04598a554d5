// State-of-the-world ADS against the real server and cache (go-control-plane's
// server scenarios): ACK, NACK, stale nonce, wildcard, named subsets, push order.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { pino } from "pino";
import { Registry } from "prom-client";
import { DiscoveryRequestSchema, DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { ConfigStatus, type ClientStatusRequestSchema, type ClientStatusResponse } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { createSnapshotCache, createSyncTracker } from "../../src/xds/index.js";
import { startHarness as startOwnHarness } from "./helpers/ads-client.js";
import { sotwStream } from "../../src/xds/server/sotw.js";
import { namesOf, node, snap, startHarness, TypeUrl, type Harness } from "./helpers/ads-client.js";

let h: Harness;
test.before.each(async () => {
  h = await startHarness();
});
test.after.each(async () => {
  await h.close();
});

const req = (typeUrl: string, names: string[] = [], prev?: DiscoveryResponse, extra: { versionInfo?: string; errorDetail?: { code: number; message: string } } = {}): MessageInitShape<typeof DiscoveryRequestSchema> => ({
  node: node(),
  typeUrl,
  resourceNames: names,
  versionInfo: prev?.versionInfo ?? "",
  responseNonce: prev?.nonce ?? "",
  ...extra,
});

test("an ACK sends nothing more", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Cluster, [], r1));
  await s.nothing();
  assert.equal(h.server.syncStatus()[0]!.types[0]!.versionAcked, r1.versionInfo);
});

test("a NACK is recorded with its message and nothing is resent until the snapshot changes", async () => {
  const s1 = snap({ CDS: { a: "1" } });
  h.cache.setSnapshot("test-node", s1);
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Cluster, [], r1, { versionInfo: "", errorDetail: { code: 3, message: "bad cluster a" } }));
  await s.nothing();
  const status = h.server.syncStatus()[0]!.types[0]!;
  assert.equal([status.versionSent, status.versionAcked, status.lastNack?.message, status.lastNack?.version], [r1.versionInfo, "", "bad cluster a", r1.versionInfo]);
  const s2 = snap({ CDS: { a: "2" } });
  h.cache.setSnapshot("test-node", s2);
  const r2 = await s.next();
  assert.is.not(r2.versionInfo, r1.versionInfo);
  assert.equal(namesOf(r2, s2), ["a"]);
});

test("a request with a stale nonce is ignored; the current nonce is answered", async () => {
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "1", b: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Endpoint, ["a"]));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Endpoint, ["a"], r1));
  const s2 = snap({ EDS: { a: "2", b: "2" } });
  h.cache.setSnapshot("test-node", s2);
  const r2 = await s.next();
  await s.send(req(TypeUrl.Endpoint, ["a", "b"], r1)); // stale: answers r1, r2 is out
  await s.nothing();
  await s.send(req(TypeUrl.Endpoint, ["a", "b"], r2));
  const r3 = await s.next();
  // EDS is answered per resource: "a" at version 2 came in r2, so only the newly asked "b" follows.
  assert.equal(namesOf(r3, s2), ["b"]);
});

const wildcardCases: Array<{ name: string; first: string[]; later: string[]; expectFirst: string[]; expectAfterAdd: string[] }> = [
  { name: "legacy wildcard (empty names on the first request) stays wildcard", first: [], later: [], expectFirst: ["a", "b"], expectAfterAdd: ["a", "b", "c"] },
  { name: '"*" is wildcard', first: ["*"], later: ["*"], expectFirst: ["a", "b"], expectAfterAdd: ["a", "b", "c"] },
  { name: '"*" with a name is still wildcard', first: ["*", "a"], later: ["*", "a"], expectFirst: ["a", "b"], expectAfterAdd: ["a", "b", "c"] },
  { name: "a named subset gets only those names", first: ["b"], later: ["b"], expectFirst: ["b"], expectAfterAdd: ["b"] },
];
for (const c of wildcardCases) {
  test(`LDS: ${c.name}`, async () => {
    const s1 = snap({ LDS: { a: "1", b: "1" } });
    h.cache.setSnapshot("test-node", s1);
    const s = h.sotw();
    await s.send(req(TypeUrl.Listener, c.first));
    const r1 = await s.next();
    assert.equal(namesOf(r1, s1), c.expectFirst);
    await s.send(req(TypeUrl.Listener, c.later, r1));
    const s2 = snap({ LDS: { a: "1", b: "2", c: "1" } });
    h.cache.setSnapshot("test-node", s2);
    const r2 = await s.next();
    assert.equal(namesOf(r2, s2), c.expectAfterAdd);
  });
}

test("names that do not exist are not waited for: the request is answered with what exists", async () => {
  const s1 = snap({ EDS: { a: "1" } });
  h.cache.setSnapshot("test-node", s1);
  const s = h.sotw();
  await s.send(req(TypeUrl.Endpoint, ["a", "missing"]));
  assert.equal(namesOf(await s.next(), s1), ["a"]);
});

test("a changed subscription is answered at once, even at the same version, with the newly asked resources", async () => {
  const s1 = snap({ EDS: { a: "1", b: "1" } });
  h.cache.setSnapshot("test-node", s1);
  const s = h.sotw();
  await s.send(req(TypeUrl.Endpoint, ["a"]));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Endpoint, ["a", "b"], r1));
  const r2 = await s.next();
  assert.is(r2.versionInfo, r1.versionInfo);
  assert.equal(namesOf(r2, s1), ["b"]);
});

// SotW LDS/CDS responses are the whole state (a missing resource is removed); EDS and RDS are
// per resource, so a change sends only what changed (Envoy updates just the watches named).
const changeCases: Array<{ name: string; type: "CDS" | "EDS" | "RDS"; typeUrl: string; names: string[]; expect: string[] }> = [
  { name: "a change to one cluster resends every cluster (full state)", type: "CDS", typeUrl: TypeUrl.Cluster, names: [], expect: ["a", "b", "c"] },
  { name: "a change to one load assignment sends only that one", type: "EDS", typeUrl: TypeUrl.Endpoint, names: ["a", "b", "c"], expect: ["b"] },
  { name: "a change to one route configuration sends only that one", type: "RDS", typeUrl: TypeUrl.Route, names: ["a", "b", "c"], expect: ["b"] },
];
for (const c of changeCases) {
  test(c.name, async () => {
    h.cache.setSnapshot("test-node", snap({ [c.type]: { a: "1", b: "1", c: "1" } }));
    const s = h.sotw();
    await s.send(req(c.typeUrl, c.names));
    const r1 = await s.next();
    await s.send(req(c.typeUrl, c.names, r1));
    const s2 = snap({ [c.type]: { a: "1", b: "2", c: "1" } });
    h.cache.setSnapshot("test-node", s2);
    const r2 = await s.next();
    assert.is.not(r2.versionInfo, r1.versionInfo);
    assert.equal(namesOf(r2, s2), c.expect);
  });
}

test("after a NACK, the next EDS response carries everything changed since the last ACK", async () => {
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "1", b: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Endpoint, ["a", "b"]));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Endpoint, ["a", "b"], r1));
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "2", b: "1" } }));
  const r2 = await s.next();
  await s.send(req(TypeUrl.Endpoint, ["a", "b"], r2, { versionInfo: r1.versionInfo, errorDetail: { code: 3, message: "bad a" } }));
  const s3 = snap({ EDS: { a: "2", b: "3" } });
  h.cache.setSnapshot("test-node", s3);
  const r3 = await s.next();
  // The client rejected a@2 with r2: it still holds a@1, so a comes again with b.
  assert.equal(namesOf(r3, s3), ["a", "b"]);
});

test("unsubscribing from every name of a type stops its pushes", async () => {
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Endpoint, ["a"]));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Endpoint, [], r1));
  await s.nothing(150);
  h.cache.setSnapshot("test-node", snap({ EDS: { a: "2" } }));
  await s.nothing();
});

test("an unsubscribe drops the response queued for the old subscription", async () => {
  const cache = createSnapshotCache();
  cache.setSnapshot("n", snap({ EDS: { a: "1" } }));
  const input = createWritableIterable<DiscoveryRequest>();
  const ac = new AbortController();
  const gen = sotwStream(input, ac.signal, { watcher: cache, tracker: createSyncTracker(), logger: pino({ level: "silent" }) });
  const mk = (names: string[], nonce = "", version = "") => create(DiscoveryRequestSchema, { node: { id: "n" }, typeUrl: TypeUrl.Endpoint, resourceNames: names, responseNonce: nonce, versionInfo: version });
  void input.write(mk(["a"]));
  const sent = (await gen.next()).value as DiscoveryResponse;
  const r1 = fromBinary(DiscoveryResponseSchema, toBinary(DiscoveryResponseSchema, sent)); // as the client reads it
  await input.write(mk(["a"], r1.nonce, r1.versionInfo));
  cache.setSnapshot("n", snap({ EDS: { a: "2" } })); // queued: nobody reads the stream now
  await new Promise((r) => setTimeout(r, 20));
  await input.write(mk([], r1.nonce, r1.versionInfo));
  const next = gen.next();
  const got = await Promise.race([next, new Promise((r) => setTimeout(() => r("nothing"), 300))]);
  assert.is(got, "nothing");
  ac.abort();
  input.close();
  await next;
});

test("pushes of several types go out CDS → EDS → LDS → RDS (make before break)", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { c: "1" }, EDS: { c: "1" }, LDS: { l: "1" }, RDS: { r: "1" } }));
  const s = h.sotw();
  const last = new Map<string, DiscoveryResponse>();
  for (const [t, names] of [[TypeUrl.Route, ["r"]], [TypeUrl.Listener, []], [TypeUrl.Endpoint, ["c"]], [TypeUrl.Cluster, []]] as const) {
    await s.send(req(t, [...names]));
    const r = await s.next();
    await s.send(req(t, [...names], r));
    last.set(t, r);
  }
  await s.nothing(100);
  h.cache.setSnapshot("test-node", snap({ CDS: { c: "2" }, EDS: { c: "2" }, LDS: { l: "2" }, RDS: { r: "2" } }));
  const order = [];
  for (let i = 0; i < 4; i++) order.push((await s.next()).typeUrl);
  assert.equal(order, [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route]);
});

test("a CDS push that removes a cluster goes after the other types' updates (break last)", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { old: "1", keep: "1" }, EDS: { keep: "1" }, RDS: { r: "1" } }));
  const s = h.sotw();
  for (const [t, names] of [[TypeUrl.Cluster, []], [TypeUrl.Endpoint, ["keep"]], [TypeUrl.Route, ["r"]]] as const) {
    await s.send(req(t, [...names]));
    const r = await s.next();
    await s.send(req(t, [...names], r));
  }
  await s.nothing(100);
  h.cache.setSnapshot("test-node", snap({ CDS: { keep: "2" }, EDS: { keep: "2" }, RDS: { r: "2" } }));
  const order = [];
  for (let i = 0; i < 3; i++) order.push((await s.next()).typeUrl);
  assert.equal(order, [TypeUrl.Endpoint, TypeUrl.Route, TypeUrl.Cluster]);
});

test("an empty type_url fails the stream with INVALID_ARGUMENT", async () => {
  const s = h.sotw();
  await s.send(req(""));
  const err = await s.failure();
  assert.instance(err, ConnectError);
  assert.is((err as ConnectError).code, Code.InvalidArgument);
});

test("a first request without node.id fails the stream with INVALID_ARGUMENT", async () => {
  const s = h.sotw();
  await s.send({ typeUrl: TypeUrl.Cluster });
  const err = await s.failure();
  assert.is((err as ConnectError).code, Code.InvalidArgument);
});

test("a stream that never reads does not hold up another node's push", async () => {
  h.cache.setSnapshot("slow", snap({ CDS: { a: "1" } }));
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  const slow = h.sotw();
  await slow.send({ node: { id: "slow" }, typeUrl: TypeUrl.Cluster });
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster));
  const r1 = await s.next();
  await s.send(req(TypeUrl.Cluster, [], r1));
  for (let i = 2; i < 50; i++) h.cache.setSnapshot("slow", snap({ CDS: { a: String(i) } }));
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "2" } }));
  assert.ok(await s.next(1000));
});

test("CSDS reports SYNCED after an ACK and ERROR with the message after a NACK", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" }, LDS: { l: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Cluster));
  const c = await s.next();
  await s.send(req(TypeUrl.Cluster, [], c));
  await s.send(req(TypeUrl.Listener));
  const l = await s.next();
  await s.send(req(TypeUrl.Listener, [], l, { versionInfo: "", errorDetail: { code: 3, message: "listener l rejected" } }));
  await s.nothing(100);
  const res = await h.csds.fetchClientStatus({ node: { id: "test-node" } });
  assert.is(res.config.length, 1);
  const byName = new Map(res.config[0]!.genericXdsConfigs.map((g) => [g.name, g]));
  assert.is(byName.get("a")!.configStatus, ConfigStatus.SYNCED);
  assert.is(byName.get("l")!.configStatus, ConfigStatus.ERROR);
  assert.is(byName.get("l")!.errorState?.details, "listener l rejected");
  assert.ok(byName.get("a")!.xdsConfig!.typeUrl.endsWith("Cluster"));
});

test("CSDS clears the error state once a later version is ACKed; syncz keeps the NACK and counts the responses", async () => {
  h.cache.setSnapshot("test-node", snap({ LDS: { l: "1" } }));
  const s = h.sotw();
  await s.send(req(TypeUrl.Listener));
  const bad = await s.next();
  await s.send(req(TypeUrl.Listener, [], bad, { versionInfo: "", errorDetail: { code: 3, message: "listener l rejected" } }));
  await s.nothing(100);
  const nacked = (await h.csds.fetchClientStatus({ node: { id: "test-node" } })).config[0]!.genericXdsConfigs[0]!;
  assert.equal([nacked.configStatus, nacked.errorState?.details], [ConfigStatus.ERROR, "listener l rejected"]);
  h.cache.setSnapshot("test-node", snap({ LDS: { l: "2" } }));
  const good = await s.next();
  await s.send(req(TypeUrl.Listener, [], good));
  await s.nothing(100);
  const synced = (await h.csds.fetchClientStatus({ node: { id: "test-node" } })).config[0]!.genericXdsConfigs[0]!;
  assert.equal([synced.configStatus, synced.errorState], [ConfigStatus.SYNCED, undefined]);
  const t = h.server.syncStatus()[0]!.types[0]!;
  assert.equal([t.lastNack?.version, t.versionAcked, t.responses], [bad.versionInfo, good.versionInfo, 2]);
});

test("CSDS streaming answers each request; a node filter selects one node", async () => {
  h.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
  h.cache.setSnapshot("other", snap({ CDS: { b: "1" } }));
  const s1 = h.sotw();
  await s1.send(req(TypeUrl.Cluster));
  await s1.next();
  const s2 = h.sotw();
  await s2.send({ node: { id: "other" }, typeUrl: TypeUrl.Cluster });
  await s2.next();
  const input = createWritableIterable<MessageInitShape<typeof ClientStatusRequestSchema>>();
  const it = h.csds.streamClientStatus(input)[Symbol.asyncIterator]();
  void input.write({});
  const all = (await it.next()).value as ClientStatusResponse;
  assert.equal(all.config.map((c) => c.node?.id), ["other", "test-node"]);
  void input.write({ node: { id: "other" } });
  const one = (await it.next()).value as ClientStatusResponse;
  assert.equal(one.config.map((c) => [c.node?.id, c.genericXdsConfigs.map((g) => [g.name, g.configStatus])]), [["other", [["b", ConfigStatus.STALE]]]]);
  input.close();
  await it.next();
});

test("pushes, ACKs, NACKs and open streams are counted on the given metrics registry", async () => {
  const registry = new Registry();
  const own = await startOwnHarness(createSnapshotCache(), registry);
  try {
    own.cache.setSnapshot("test-node", snap({ CDS: { a: "1" } }));
    const s = own.sotw();
    await s.send(req(TypeUrl.Cluster));
    const r1 = await s.next();
    await s.send(req(TypeUrl.Cluster, [], r1, { errorDetail: { code: 3, message: "no" } }));
    await s.nothing(100);
    const text = await registry.metrics();
    assert.match(text, /meshkey_xds_pushes_total\{type="CDS"\} 1/);
    assert.match(text, /meshkey_xds_nacks_total\{type="CDS"\} 1/);
    assert.match(text, /meshkey_xds_streams\{protocol="sotw"\} 1/);
  } finally {
    await own.close();
  }
});

test.run();
