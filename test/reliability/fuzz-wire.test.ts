// Hostile traffic on the two gRPC servers that face workloads: random
// DiscoveryRequest sequences on SDS and ADS (SotW and delta), raw garbage on the
// socket and the port, and an oversized gRPC message. Expected every time: a gRPC
// error or a quiet close, never a crash or an unhandled rejection (this process
// hosts the servers, so either would fail the file), and the servers still
// serve a well-formed client afterwards. Seeded and bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { pino } from "pino";
import { createClient, encodeBinaryHeader, ConnectError } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { resolveServeConfig } from "../../src/cli/serve-config.js";
import { startMeshkey, type RunningMeshkey } from "../../src/cli/meshkey-process.js";
import { deltaArb, sotwArb, TYPES, type DeltaInit, type SotwInit } from "./support/arbitraries.js";

const runs = Number(process.env.FUZZ_RUNS ?? 60);
const seed = Number(process.env.FUZZ_SEED ?? 20261123);
const dir = mkdtempSync(join(tmpdir(), "meshkey-wire-"));
const socketPath = join(dir, "uds_path");
let meshkey: RunningMeshkey;
let token: string;

const unhandled: unknown[] = [];
process.on("unhandledRejection", (err) => unhandled.push(err));

test.before(async () => {
  meshkey = await startMeshkey(
    resolveServeConfig([
      "--state-dir", join(dir, "state"),
      "--sds-socket", socketPath,
      "--xds-listen", "127.0.0.1:0",
      "--ca-listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
    ]),
    pino({ level: "silent" }),
  );
  token = await meshkey.devIssuer!.mint({ namespace: "foo", serviceAccount: "sleep" });
});
test.after(async () => {
  await meshkey.close();
  rmSync(dir, { recursive: true, force: true });
});

function sdsClient() {
  const sessions = new Http2SessionManager("http://localhost", undefined, { createConnection: () => net.connect(socketPath) });
  return { client: createClient(SecretDiscoveryService, createGrpcTransport({ baseUrl: "http://localhost", sessionManager: sessions })), sessions };
}
function adsClient() {
  return createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${meshkey.addresses.xds}` }));
}

/** Sends the requests on one stream, reads whatever comes back for a short while, then hangs up. */
async function drive<Req, Res>(open: (input: AsyncIterable<Req>, signal: AbortSignal) => AsyncIterable<Res>, reqs: Req[]): Promise<"ok" | "grpc-error"> {
  const input = createWritableIterable<Req>();
  const abort = new AbortController();
  const reader = (async () => {
    try {
      for await (const _ of open(input, abort.signal)) {
        /* responses are fine */
      }
      return "ok" as const;
    } catch (err) {
      if (err instanceof ConnectError) return "grpc-error" as const;
      throw err;
    }
  })();
  for (const r of reqs) {
    await Promise.race([input.write(r).catch(() => {}), new Promise((res) => setTimeout(res, 30))]);
  }
  setTimeout(() => abort.abort(), 60);
  const outcome = await reader;
  input.close();
  return outcome;
}

async function sdsStillServes(): Promise<void> {
  const { client, sessions } = sdsClient();
  try {
    const res = await client.fetchSecrets(
      { node: { id: "n" }, resourceNames: ["ROOTCA"], typeUrl: TYPES[0]! },
      { headers: { "istio_sds_credentials_header-bin": encodeBinaryHeader(new TextEncoder().encode(token)) }, timeoutMs: 10_000 },
    );
    assert.is(res.resources.length, 1);
  } finally {
    sessions.abort();
  }
}
async function adsStillServes(): Promise<void> {
  const input = createWritableIterable<SotwInit>();
  void input.write({ node: { id: "sidecar~127.0.0.1~sleep-1.foo~foo.svc.cluster.local" }, typeUrl: TYPES[1]! }).catch(() => {});
  const abort = new AbortController();
  const it = adsClient().streamAggregatedResources(input, { signal: abort.signal })[Symbol.asyncIterator]();
  const first = await it.next();
  abort.abort();
  assert.ok(!first.done && first.value.resources.length > 0);
}

test("random SotW request sequences on SDS end in a response, a gRPC error or nothing — never a crash", async () => {
  const { client, sessions } = sdsClient();
  const headers = { "istio_sds_credentials_header-bin": encodeBinaryHeader(new TextEncoder().encode(token)) };
  await fc.assert(
    fc.asyncProperty(fc.array(sotwArb, { minLength: 1, maxLength: 5 }), async (reqs) => {
      await drive<SotwInit, unknown>((input, signal) => client.streamSecrets(input, { headers, signal }), reqs);
      return true;
    }),
    { numRuns: runs, seed },
  );
  sessions.abort();
  await sdsStillServes();
});

test("random delta request sequences on SDS are survived", async () => {
  const { client, sessions } = sdsClient();
  const headers = { "istio_sds_credentials_header-bin": encodeBinaryHeader(new TextEncoder().encode(token)) };
  await fc.assert(
    fc.asyncProperty(fc.array(deltaArb, { minLength: 1, maxLength: 5 }), async (reqs) => {
      await drive<DeltaInit, unknown>((input, signal) => client.deltaSecrets(input, { headers, signal }), reqs);
      return true;
    }),
    { numRuns: runs, seed },
  );
  sessions.abort();
  await sdsStillServes();
});

test("random SotW and delta request sequences on ADS are survived", async () => {
  const ads = adsClient();
  await fc.assert(
    fc.asyncProperty(fc.array(sotwArb, { minLength: 1, maxLength: 5 }), fc.array(deltaArb, { minLength: 1, maxLength: 5 }), async (sotw, delta) => {
      await drive<SotwInit, unknown>((input, signal) => ads.streamAggregatedResources(input, { signal }), sotw);
      await drive<DeltaInit, unknown>((input, signal) => ads.deltaAggregatedResources(input, { signal }), delta);
      return true;
    }),
    { numRuns: runs, seed },
  );
  await adsStillServes();
});

test("raw garbage on the SDS socket and the ADS port is dropped and both keep serving", async () => {
  const targets: Array<() => net.Socket> = [
    () => net.connect(socketPath),
    () => {
      const [host, port] = meshkey.addresses.xds!.split(":");
      return net.connect(Number(port), host);
    },
  ];
  for (const connect of targets) {
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const s = connect();
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        s.on("connect", () => {
          // Half the time a valid HTTP/2 preface first, then junk frames.
          const junk = randomBytes(64 + i * 97);
          s.write(i % 2 === 0 ? Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), junk]) : junk);
          setTimeout(() => s.destroy(), 50);
        });
      });
    }
  }
  await sdsStillServes();
  await adsStillServes();
});

const oversizedTargets: Array<[string, () => http2.ClientHttp2Session, string]> = [
  ["ADS port", () => http2.connect(`http://${meshkey.addresses.xds}`), "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"],
  ["SDS socket", () => http2.connect("http://localhost", { createConnection: () => net.connect(socketPath) }), "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"],
];
for (const [where, connect, path] of oversizedTargets) {
  test(`a gRPC message above the size limit on the ${where} gets RESOURCE_EXHAUSTED, not a buffered 64 MiB`, async () => {
    const session = connect();
    session.on("error", () => {});
    try {
      const status = await new Promise<string | undefined>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          authorization: `Bearer ${token}`,
        });
        let grpcStatus: string | undefined;
        stream.on("response", (h) => (grpcStatus ??= h["grpc-status"] as string | undefined));
        // The server answers with trailers at once; our half of the stream stays open, so don't wait for close.
        stream.on("trailers", (t) => resolve(t["grpc-status"] as string | undefined));
        stream.on("close", () => resolve(grpcStatus));
        stream.on("error", reject);
        setTimeout(() => resolve("no answer within 5 s"), 5_000).unref();
        stream.resume();
        const header = Buffer.alloc(5);
        header.writeUInt32BE(64 * 1024 * 1024, 1); // claims 64 MiB
        stream.write(header);
        stream.write(randomBytes(1024));
      });
      assert.is(status, "8", "grpc-status 8 = RESOURCE_EXHAUSTED");
    } finally {
      session.destroy();
    }
    await sdsStillServes();
    await adsStillServes();
  });
}

test("every stream and watch is released once the attackers hang up, and memory returns near baseline", async () => {
  const gauge = async (name: string) => {
    const text = await meshkey.registry.metrics();
    return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))].reduce((a, m) => a + Number(m[1]), 0);
  };
  let open = Infinity;
  for (let i = 0; i < 60 && open > 0; i++) {
    open = (await gauge("meshkey_sds_active_streams")) + (await gauge("meshkey_xds_streams"));
    if (open > 0) await new Promise((r) => setTimeout(r, 50));
  }
  assert.is(open, 0, "streams still open after every client left");
  const { setFlagsFromString } = await import("node:v8");
  const { runInNewContext } = await import("node:vm");
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  const ads = adsClient();
  for (let i = 0; i < 200; i++) {
    await drive<SotwInit, unknown>((input, signal) => ads.streamAggregatedResources(input, { signal }), [
      { node: { id: `sidecar~127.0.0.1~sleep-${i}.foo~foo.svc.cluster.local` }, typeUrl: TYPES[1]! },
    ]);
  }
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 16 * 1024 * 1024, `heap grew by ${(grown / 1048576).toFixed(1)} MiB after 200 short-lived ADS streams`);
});

test("no unhandled rejection happened while under attack", () => {
  assert.equal(unhandled.map(String), []);
});

test.run();
