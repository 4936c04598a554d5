// Child process of bench/load.bench.ts: holds N SDS streams (grpc-js over the Unix
// socket, one token per identity, `perConnection` streams per HTTP/2 connection) and M
// ADS streams (grpc-js over loopback TCP, CDS wildcard + one EDS name), ACKs every
// response, and records per stream the time to its first response and to the first
// response after the parent's "change" mark (times are epoch ms from
// performance.timeOrigin + performance.now(), comparable between the processes).
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { DiscoveryRequestSchema, DiscoveryResponseSchema, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SDS_TOKEN_HEADER, SECRET_TYPE_URL } from "../../src/spiffe/index.js";

type Req = MessageInitShape<typeof DiscoveryRequestSchema>;
const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const SECRET = SECRET_TYPE_URL;
const now = () => performance.timeOrigin + performance.now();

const method = (path: string) => ({
  path,
  requestStream: true,
  responseStream: true,
  requestSerialize: (m: Req) => Buffer.from(toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, m))),
  requestDeserialize: (b: Buffer) => fromBinary(DiscoveryRequestSchema, b),
  responseSerialize: (m: DiscoveryResponse) => Buffer.from(toBinary(DiscoveryResponseSchema, m)),
  responseDeserialize: (b: Buffer) => fromBinary(DiscoveryResponseSchema, b),
});
const Client = grpc.makeGenericClientConstructor(
  {
    Ads: method("/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"),
    Sds: method("/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"),
  },
  "LoadClient",
);
type Call = grpc.ClientDuplexStream<Req, DiscoveryResponse>;

export interface OpenMessage {
  type: "open";
  sds?: { socketPath: string; tokens: string[]; streams: number };
  ads?: { address: string; streams: number; eds: string };
  perConnection: number;
}
export interface StreamTimes {
  /** ms from opening to the first response (undefined: never came). */
  first: number[];
  /** ms from the change mark to the first later response that changed the version. */
  update: number[];
  starved: number;
  missedUpdate: number;
  errors: Record<string, number>;
}

interface Stream {
  call: Call;
  opened: number;
  first?: number;
  versionAtMark?: string;
  version?: string;
  updated?: number;
  failed?: string;
}
const sds: Stream[] = [];
const ads: Stream[] = [];
const clients: grpc.Client[] = [];
let markAt = 0;
let marked = false;
const send = (m: unknown) => process.send!(m);

function client(address: string, c: number): grpc.Client {
  const cl = new Client(address, grpc.credentials.createInsecure(), { "load.connection": c, "grpc.max_receive_message_length": 4 << 20, "grpc.keepalive_time_ms": 600_000 });
  clients.push(cl);
  return cl;
}

function track(s: Stream, r: DiscoveryResponse, watchType: string) {
  const t = now();
  s.first ??= t;
  if (r.typeUrl !== watchType) return;
  if (marked && s.updated === undefined && s.versionAtMark !== undefined && r.versionInfo !== s.versionAtMark) s.updated = t;
  s.version = r.versionInfo;
}

function openAll(msg: OpenMessage) {
  let c = 0;
  if (msg.sds) {
    const { socketPath, tokens, streams } = msg.sds;
    let cl: grpc.Client | undefined;
    for (let i = 0; i < streams; i++) {
      if (i % msg.perConnection === 0) cl = client(`unix://${socketPath}`, c++);
      const md = new grpc.Metadata();
      md.set(SDS_TOKEN_HEADER, Buffer.from(tokens[i % tokens.length]!));
      const call = (cl as unknown as { Sds: (md: grpc.Metadata) => Call }).Sds(md);
      const s: Stream = { call, opened: now() };
      sds.push(s);
      call.on("data", (r: DiscoveryResponse) => {
        track(s, r, SECRET);
        call.write({ typeUrl: SECRET, versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames: ["default"] });
      });
      call.on("error", (e: grpc.ServiceError) => (s.failed ??= grpc.status[e.code] ?? String(e.code)));
      call.write({ node: { id: `sidecar~127.0.0.1~load-${i}.load~load.svc.cluster.local` }, typeUrl: SECRET, resourceNames: ["default"] });
    }
  }
  if (msg.ads) {
    const { address, streams, eds } = msg.ads;
    let cl: grpc.Client | undefined;
    for (let i = 0; i < streams; i++) {
      if (i % msg.perConnection === 0) cl = client(address, c++);
      const call = (cl as unknown as { Ads: () => Call }).Ads();
      const s: Stream = { call, opened: now() };
      ads.push(s);
      call.on("data", (r: DiscoveryResponse) => {
        track(s, r, EDS);
        call.write({ typeUrl: r.typeUrl, versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames: r.typeUrl === EDS ? [eds] : [] });
      });
      call.on("error", (e: grpc.ServiceError) => (s.failed ??= grpc.status[e.code] ?? String(e.code)));
      const node = { id: `load-${i}`, metadata: { GENERATOR: "grpc" } };
      call.write({ node, typeUrl: CDS });
      call.write({ node, typeUrl: EDS, resourceNames: [eds] });
    }
  }
}

const all = () => [...sds, ...ads];
function times(list: Stream[]): StreamTimes {
  const errors: Record<string, number> = {};
  for (const s of list) if (s.failed) errors[s.failed] = (errors[s.failed] ?? 0) + 1;
  return {
    first: list.flatMap((s) => (s.first === undefined ? [] : [s.first - s.opened])),
    update: list.flatMap((s) => (s.updated === undefined ? [] : [s.updated - markAt])),
    starved: list.filter((s) => s.first === undefined).length,
    missedUpdate: list.filter((s) => s.updated === undefined).length,
    errors,
  };
}

/** Resolves when `done` holds for every stream, or after `ms`. */
async function until(done: (s: Stream) => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !all().every(done)) await new Promise((r) => setTimeout(r, 50));
}

process.on("message", async (msg: { type: string; markAt?: number; ms?: number } & Partial<OpenMessage>) => {
  if (msg.type === "open") {
    openAll(msg as OpenMessage);
    await until((s) => s.first !== undefined && s.version !== undefined, msg.ms ?? 60_000);
    send({ type: "opened", at: now(), sds: times(sds).starved, ads: times(ads).starved });
  } else if (msg.type === "mark") {
    for (const s of all()) s.versionAtMark = s.version;
    marked = true;
    send({ type: "marked" });
  } else if (msg.type === "await-update") {
    markAt = msg.markAt!;
    await until((s) => s.updated !== undefined, msg.ms!);
    send({ type: "updated", at: now() });
  } else if (msg.type === "results") {
    send({ type: "results", sds: times(sds), ads: times(ads) });
  } else if (msg.type === "close") {
    for (const s of all()) s.call.cancel();
    for (const c of clients) c.close();
    setTimeout(() => process.exit(0), 200);
  }
});
send({ type: "started" });
