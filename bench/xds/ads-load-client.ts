// Child process of bench/xds.bench.ts: opens N ADS streams with @grpc/grpc-js over a
// few HTTP/2 connections, ACKs every response, and tells the parent (IPC) when every
// stream has ACKed a CDS+EDS state, and later when every stream has ACKed a change.
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { DiscoveryRequestSchema, DiscoveryResponseSchema, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";

type Req = MessageInitShape<typeof DiscoveryRequestSchema>;
const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

const Ads = grpc.makeGenericClientConstructor(
  {
    StreamAggregatedResources: {
      path: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
      requestStream: true,
      responseStream: true,
      requestSerialize: (m: Req) => Buffer.from(toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, m))),
      requestDeserialize: (b: Buffer) => fromBinary(DiscoveryRequestSchema, b),
      responseSerialize: (m: DiscoveryResponse) => Buffer.from(toBinary(DiscoveryResponseSchema, m)),
      responseDeserialize: (b: Buffer) => fromBinary(DiscoveryResponseSchema, b),
    },
  },
  "Ads",
);

interface StreamState {
  call: grpc.ClientDuplexStream<Req, DiscoveryResponse>;
  versions: Map<string, string>;
}

const streams: StreamState[] = [];
const clients: grpc.Client[] = [];
let phase: "initial" | "change" = "initial";
let baseline = new Map<number, string>();
let done = 0;
const send = (m: unknown) => process.send!(m);

function onResponse(i: number, r: DiscoveryResponse) {
  const st = streams[i]!;
  st.call.write({ typeUrl: r.typeUrl, versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames: r.typeUrl === EDS ? [edsName] : [] });
  st.versions.set(r.typeUrl, r.versionInfo);
  if (phase === "initial" && st.versions.size === 2 && !baseline.has(i)) {
    baseline.set(i, r.typeUrl === EDS ? r.versionInfo : st.versions.get(EDS)!);
    if (++done === streams.length) send({ type: "ready" });
  } else if (phase === "change" && r.typeUrl === EDS && r.versionInfo !== baseline.get(i)) {
    baseline.set(i, r.versionInfo);
    if (++done === streams.length) send({ type: "changed" });
  }
}

let edsName = "";
process.on("message", (msg: { type: string; port?: number; n?: number; connections?: number; eds?: string }) => {
  if (msg.type === "open") {
    edsName = msg.eds!;
    for (let c = 0; c < msg.connections!; c++) {
      clients.push(new Ads(`127.0.0.1:${msg.port}`, grpc.credentials.createInsecure(), { "bench.connection": c, "grpc.max_receive_message_length": 4 << 20 }));
    }
    for (let i = 0; i < msg.n!; i++) {
      const client = clients[i % clients.length]!;
      const call = (client as unknown as { StreamAggregatedResources: () => StreamState["call"] }).StreamAggregatedResources();
      streams.push({ call, versions: new Map() });
      call.on("data", (r: DiscoveryResponse) => onResponse(i, r));
      call.on("error", () => {});
      const nodeInfo = { id: `bench-${i}`, metadata: { GENERATOR: "grpc" } };
      call.write({ node: nodeInfo, typeUrl: CDS });
      call.write({ node: nodeInfo, typeUrl: EDS, resourceNames: [edsName] });
    }
  } else if (msg.type === "watch-change") {
    phase = "change";
    done = 0;
    send({ type: "watching" });
  } else if (msg.type === "close") {
    for (const s of streams) s.call.cancel();
    for (const c of clients) c.close();
    setTimeout(() => process.exit(0), 100);
  }
});
send({ type: "started" });
