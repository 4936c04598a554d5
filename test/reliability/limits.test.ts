// One client must never take the process down (issue 13): each limit on the SDS
// socket, the ADS port and the admin pages is driven past its cap by a hostile
// client. Each test checks the client gets the right gRPC status, the heap stays
// bounded, /readyz stays 200 and a well-behaved client is still served.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import * as v8 from "node:v8";
import { runInNewContext } from "node:vm";
import { pino } from "pino";
import { createClient, encodeBinaryHeader, ConnectError, Code } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { resolveServeConfig } from "../../src/cli/serve-config.js";
import { startMeshkey, type RunningMeshkey } from "../../src/cli/meshkey-process.js";
import { isLoopbackHost } from "../../src/cli/control-plane.js";
import { MAX_NAME_BYTES, MAX_STREAMS_PER_IDENTITY } from "../../src/sds/index.js";
import { SECRET_TYPE_URL } from "../../src/spiffe/index.js";
import { TypeUrl } from "../../src/xds/index.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-limits-"));
const socketPath = join(dir, "uds_path");
const logLines: string[] = [];
let meshkey: RunningMeshkey;
let token: string;
let otherToken: string;
const SIDECAR = "sidecar~127.0.0.1~sleep-1.foo~foo.svc.cluster.local";
const MiB = 1024 * 1024;

test.before(async () => {
  const sink = new Writable({ write: (chunk, _e, cb) => (logLines.push(String(chunk)), cb()) });
  meshkey = await startMeshkey(
    resolveServeConfig([
      "--state-dir", join(dir, "state"),
      "--sds-socket", socketPath,
      "--xds-listen", "127.0.0.1:0",
      "--ca-listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
    ]),
    pino({ level: "warn" }, sink),
  );
  token = await meshkey.devIssuer!.mint({ namespace: "foo", serviceAccount: "sleep" });
  otherToken = await meshkey.devIssuer!.mint({ namespace: "bar", serviceAccount: "httpbin" });
});
test.after(async () => {
  await meshkey.close();
  rmSync(dir, { recursive: true, force: true });
});

const headers = (t = token) => ({ "istio_sds_credentials_header-bin": encodeBinaryHeader(new TextEncoder().encode(t)) });
function sdsClient() {
  const sessions = new Http2SessionManager("http://localhost", undefined, { createConnection: () => net.connect(socketPath) });
  return { client: createClient(SecretDiscoveryService, createGrpcTransport({ baseUrl: "http://localhost", sessionManager: sessions })), sessions };
}
function adsClient() {
  const sessions = new Http2SessionManager(`http://${meshkey.addresses.xds}`);
  return { client: createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${meshkey.addresses.xds}`, sessionManager: sessions })), sessions };
}
const admin = (path: string) => fetch(`http://${meshkey.addresses.admin}${path}`);

/** Opens a stream, sends `reqs`, and returns its first response or its gRPC error. */
async function firstOf<Req, Res>(open: (input: AsyncIterable<Req>, signal: AbortSignal) => AsyncIterable<Res>, reqs: Req[]) {
  const input = createWritableIterable<Req>();
  const abort = new AbortController();
  const it = open(input, abort.signal)[Symbol.asyncIterator]();
  for (const r of reqs) void input.write(r).catch(() => {});
  try {
    const timer = setTimeout(() => abort.abort(), 10_000);
    const first = await it.next();
    clearTimeout(timer);
    return { response: first.done ? undefined : first.value, error: undefined as ConnectError | undefined };
  } catch (err) {
    return { response: undefined, error: ConnectError.from(err) };
  } finally {
    abort.abort();
    input.close();
  }
}

const heapMiB = () => process.memoryUsage().heapUsed / MiB;
// A full GC before each reading, so the figures compare live memory, not garbage.
v8.setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
async function settledHeapMiB(): Promise<number> {
  gc();
  return heapMiB();
}

/** The three things every limit test checks after the attack. */
async function stillHealthy(heapBefore: number, maxGrowthMiB: number, label: string): Promise<void> {
  const ready = await admin("/readyz");
  assert.is(ready.status, 200, "/readyz stays 200");
  const { client, sessions } = sdsClient();
  try {
    const res = await client.fetchSecrets({ node: { id: "good" }, resourceNames: ["default", "ROOTCA"], typeUrl: SECRET_TYPE_URL }, { headers: headers(otherToken), timeoutMs: 10_000 });
    assert.is(res.resources.length, 2, "a well-behaved SDS client is served");
  } finally {
    sessions.abort();
  }
  const ads = adsClient();
  const r = await firstOf((i, signal) => ads.client.streamAggregatedResources(i, { signal }), [{ node: { id: SIDECAR }, typeUrl: TypeUrl.Cluster }]);
  ads.sessions.abort();
  assert.ok(r.response && r.response.resources.length > 0, "a well-behaved ADS client is served");
  const after = await settledHeapMiB();
  console.log(`    ${label}: heap ${heapBefore.toFixed(1)} → ${after.toFixed(1)} MiB, rss ${(process.memoryUsage().rss / MiB).toFixed(0)} MiB`);
  assert.ok(after - heapBefore < maxGrowthMiB, `heap grew ${(after - heapBefore).toFixed(1)} MiB (bound ${maxGrowthMiB})`);
}

test("SDS: a secret name longer than 2,048 bytes is refused with INVALID_ARGUMENT naming MAX_NAME_BYTES (SotW, delta, fetch)", async () => {
  const before = await settledHeapMiB();
  const long = `spiffe://cluster.local/${"x".repeat(MAX_NAME_BYTES)}`;
  const { client, sessions } = sdsClient();
  for (let i = 0; i < 20; i++) {
    const sotw = await firstOf((input, signal) => client.streamSecrets(input, { headers: headers(), signal }), [{ node: { id: "n" }, typeUrl: SECRET_TYPE_URL, resourceNames: [long] }]);
    assert.is(sotw.error?.code, Code.InvalidArgument);
    assert.match(sotw.error!.rawMessage, "MAX_NAME_BYTES");
  }
  const delta = await firstOf((input, signal) => client.deltaSecrets(input, { headers: headers(), signal }), [{ node: { id: "n" }, typeUrl: SECRET_TYPE_URL, resourceNamesSubscribe: [long] }]);
  assert.is(delta.error?.code, Code.InvalidArgument);
  const fetched = await client.fetchSecrets({ resourceNames: [long], typeUrl: SECRET_TYPE_URL }, { headers: headers() }).catch((e: unknown) => ConnectError.from(e));
  assert.is((fetched as ConnectError).code, Code.InvalidArgument);
  sessions.abort();
  await stillHealthy(before, 16, "long SDS names");
});

test("SDS delta: initial_resource_versions above 64 names is refused with RESOURCE_EXHAUSTED (it no longer bypasses the cap)", async () => {
  const before = await settledHeapMiB();
  const { client, sessions } = sdsClient();
  const initial: Record<string, string> = {};
  for (let i = 0; i < 5_000; i++) initial[`name-${i}-${"y".repeat(200)}`] = "1";
  for (let i = 0; i < 10; i++) {
    const r = await firstOf((input, signal) => client.deltaSecrets(input, { headers: headers(), signal }), [{ node: { id: "n" }, typeUrl: SECRET_TYPE_URL, initialResourceVersions: initial, resourceNamesSubscribe: ["default"] }]);
    assert.is(r.error?.code, Code.ResourceExhausted);
    assert.match(r.error!.rawMessage, "MAX_NAMES_PER_STREAM");
  }
  sessions.abort();
  await stillHealthy(before, 16, "delta initial_resource_versions");
});

test("SDS: unknown names are counted, /debug/sds keeps only a bounded truncated sample, and the warning is rate-limited", async () => {
  const before = await settledHeapMiB();
  const logsBefore = logLines.filter((l) => l.includes("unknown secret name")).length;
  const { client, sessions } = sdsClient();
  const N = 400;
  await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const name = `unknown-${i}-${"z".repeat(2_000)}`;
      const res = await client.fetchSecrets({ resourceNames: [name], typeUrl: SECRET_TYPE_URL }, { headers: headers(), timeoutMs: 10_000 });
      assert.is(res.resources.length, 0);
    }),
  );
  sessions.abort();
  const metrics = await (await admin("/metrics")).text();
  const counted = Number(/^meshkey_sds_unknown_names_total (\d+)/m.exec(metrics)?.[1]);
  assert.ok(counted >= N, `counted ${counted}`);
  const debug = (await (await admin("/debug/sds")).json()) as { unknownNames: Array<{ name: string }>; unknownNamesTotal: number };
  assert.ok(debug.unknownNames.length <= 256, `sample of ${debug.unknownNames.length}`);
  assert.ok(debug.unknownNames.every((u) => u.name.length <= 160), "each sampled name is truncated");
  assert.ok(debug.unknownNamesTotal >= N);
  const warned = logLines.filter((l) => l.includes("unknown secret name")).slice(logsBefore);
  assert.ok(warned.length <= 10, `${warned.length} warnings for ${N} unknown names`);
  assert.ok(warned.every((l) => l.length < 1_000), "logged names are truncated");
  await stillHealthy(before, 16, "unknown names");
});

test(`SDS: one identity holding ${MAX_STREAMS_PER_IDENTITY} streams gets RESOURCE_EXHAUSTED for the next; other identities are served`, async () => {
  const before = await settledHeapMiB();
  // Several connections: one carries at most maxConcurrentStreams (1,000).
  const conns = Array.from({ length: 3 }, () => sdsClient());
  const aborts: AbortController[] = [];
  const opened = await Promise.all(
    Array.from({ length: MAX_STREAMS_PER_IDENTITY }, (_, i) => {
      const { client } = conns[i % conns.length]!;
      const input = createWritableIterable<{ node: { id: string }; typeUrl: string; resourceNames: string[] }>();
      const abort = new AbortController();
      aborts.push(abort);
      void input.write({ node: { id: `n${i}` }, typeUrl: SECRET_TYPE_URL, resourceNames: ["ROOTCA"] }).catch(() => {});
      return client.streamSecrets(input, { headers: headers(), signal: abort.signal })[Symbol.asyncIterator]().next().then((r) => !r.done);
    }),
  );
  assert.ok(opened.every(Boolean), "every stream inside the cap is answered");
  const extra = sdsClient();
  const r = await firstOf((input, signal) => extra.client.streamSecrets(input, { headers: headers(), signal }), [{ node: { id: "x" }, typeUrl: SECRET_TYPE_URL, resourceNames: ["ROOTCA"] }]);
  assert.is(r.error?.code, Code.ResourceExhausted);
  assert.match(r.error!.rawMessage, "MAX_STREAMS_PER_IDENTITY");
  const metrics = await (await admin("/metrics")).text();
  assert.match(metrics, /meshkey_sds_streams_refused_total\{limit="streams_per_identity"\} [1-9]/);
  // Held: bounded by the cap (client and server share this heap).
  const held = await settledHeapMiB();
  console.log(`    ${MAX_STREAMS_PER_IDENTITY} streams held: heap ${before.toFixed(1)} → ${held.toFixed(1)} MiB (${(((held - before) * 1024) / MAX_STREAMS_PER_IDENTITY).toFixed(0)} KiB per stream, both ends)`);
  assert.ok(held - before < 160, "memory held by one identity is bounded by the cap");
  for (const a of aborts) a.abort();
  for (const c of [...conns, extra]) c.sessions.abort();
  assert.ok(await until(async () => (await activeSdsStreams()) === 0), "every stream is released");
  await stillHealthy(before, 24, "after the streams of one identity closed");
});

async function activeSdsStreams(): Promise<number> {
  const text = await (await admin("/metrics")).text();
  let sum = 0;
  for (const m of text.matchAll(/^meshkey_sds_active_streams\{[^}]*\} (\d+)/gm)) sum += Number(m[1]);
  return sum;
}

/** Polls `cond` every 20 ms until true or `ms` passed (bounded; no fixed sleeps). */
async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

test("ADS: an unknown type URL and a resource name above 1,024 bytes are refused with INVALID_ARGUMENT", async () => {
  const before = await settledHeapMiB();
  const { client, sessions } = adsClient();
  const open = (i: AsyncIterable<never>, signal: AbortSignal) => client.streamAggregatedResources(i, { signal });
  const unknownType = await firstOf(open, [{ node: { id: SIDECAR }, typeUrl: `type.googleapis.com/${"a".repeat(5_000)}` }] as never[]);
  assert.is(unknownType.error?.code, Code.InvalidArgument);
  assert.match(unknownType.error!.rawMessage, "ADS_TYPE_URLS");
  assert.ok(unknownType.error!.rawMessage.length < 600, "the message does not echo the whole type URL");
  for (let i = 0; i < 20; i++) {
    const longName = await firstOf(open, [{ node: { id: SIDECAR }, typeUrl: TypeUrl.Endpoint, resourceNames: ["n".repeat(200_000)] }] as never[]);
    assert.is(longName.error?.code, Code.InvalidArgument);
    assert.match(longName.error!.rawMessage, "MAX_RESOURCE_NAME_BYTES");
  }
  const deltaLong = await firstOf(
    (i: AsyncIterable<never>, signal: AbortSignal) => client.deltaAggregatedResources(i, { signal }),
    [{ node: { id: SIDECAR }, typeUrl: TypeUrl.Endpoint, resourceNamesSubscribe: ["n".repeat(2_000)] }] as never[],
  );
  assert.is(deltaLong.error?.code, Code.InvalidArgument);
  sessions.abort();
  await stillHealthy(before, 16, "ADS type URLs and long names");
});

test("ADS delta: initial_resource_versions above 10,000 names is refused with RESOURCE_EXHAUSTED", async () => {
  const before = await settledHeapMiB();
  const { client, sessions } = adsClient();
  const initial: Record<string, string> = {};
  for (let i = 0; i < 10_001; i++) initial[`c${i}`] = "v";
  const r = await firstOf(
    (i: AsyncIterable<never>, signal: AbortSignal) => client.deltaAggregatedResources(i, { signal }),
    [{ node: { id: SIDECAR }, typeUrl: TypeUrl.Cluster, initialResourceVersions: initial }] as never[],
  );
  assert.is(r.error?.code, Code.ResourceExhausted);
  assert.match(r.error!.rawMessage, "initial_resource_versions");
  sessions.abort();
  await stillHealthy(before, 16, "ADS initial_resource_versions");
});

test("/debug/config_dump does not echo node metadata meshkey does not use (a planted token is redacted)", async () => {
  const { client, sessions } = adsClient();
  const planted = "eyJhbGciOi.planted-token.secret";
  const input = createWritableIterable<never>();
  const abort = new AbortController();
  void input.write({ node: { id: SIDECAR, metadata: { NAMESPACE: "foo", AUTH_TOKEN: planted } }, typeUrl: TypeUrl.Cluster } as never).catch(() => {});
  const first = await client.streamAggregatedResources(input, { signal: abort.signal })[Symbol.asyncIterator]().next();
  assert.ok(!first.done);
  // The stream stays open while the page is read (the node's snapshot lives as long as its streams).
  const dump = await (await admin(`/debug/config_dump?node=${encodeURIComponent(SIDECAR)}`)).text();
  abort.abort();
  sessions.abort();
  assert.not.match(dump, planted);
  assert.match(dump, "AUTH_TOKEN");
  assert.match(dump, '"NAMESPACE": "foo"');
});

test("/debug/constructor, /debug/__proto__ and /debug/toString are 404, not the object's prototype", async () => {
  for (const page of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
    const res = await admin(`/debug/${page}`);
    assert.is(res.status, 404, page);
  }
});

test("/debug/sds is paginated: ?limit cuts every list, says so in page, and links the next page", async () => {
  const { client, sessions } = sdsClient();
  const aborts: AbortController[] = [];
  await Promise.all(
    Array.from({ length: 30 }, (_, i) => {
      const input = createWritableIterable<{ typeUrl: string; resourceNames: string[]; node: { id: string } }>();
      const abort = new AbortController();
      aborts.push(abort);
      void input.write({ node: { id: `p${i}` }, typeUrl: SECRET_TYPE_URL, resourceNames: ["ROOTCA"] }).catch(() => {});
      return client.streamSecrets(input, { headers: headers(), signal: abort.signal })[Symbol.asyncIterator]().next();
    }),
  );
  const res = await admin("/debug/sds?limit=10");
  const body = (await res.json()) as { streams: unknown[]; page: { limit: number; totals: Record<string, number> } };
  assert.is(body.streams.length, 10);
  assert.ok(body.page.totals.streams! >= 30);
  assert.match(res.headers.get("link") ?? "", "offset=10");
  const second = (await (await admin("/debug/sds?limit=10&offset=10")).json()) as { streams: Array<{ id: string }> };
  assert.is(second.streams.length, 10);
  assert.is((await admin("/debug/sds?limit=-1")).status, 400);
  const big = (await (await admin("/debug/sds?limit=999999")).json()) as { streams: unknown[] };
  assert.ok(big.streams.length <= 5_000, "?limit is capped");
  for (const a of aborts) a.abort();
  sessions.abort();
});

test("a plaintext ADS address is node-local only when it is loopback (a warning is logged for any other)", () => {
  for (const h of ["127.0.0.1", "127.5.6.7", "::1", "[::1]", "localhost"]) assert.ok(isLoopbackHost(h), h);
  for (const h of ["0.0.0.0", "::", "10.0.0.5", "192.168.1.1", "example.com"]) assert.not.ok(isLoopbackHost(h), h);
});

test.run();
