// A grpc-js client acting as an Envoy sidecar: its ADS stream gets clusters and
// listeners that decode with Envoy's own protos and carry the SDS references
// (default, ROOTCA, one byte-identical config source), SANs and client-cert rules.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { ClusterSchema, type Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ConfigSourceSchema } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { ListenerSchema, type Listener } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { ClusterLoadAssignmentSchema } from "../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { RouteConfigurationSchema } from "../../gen/envoy/config/route/v3/route_pb.js";
import {
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { DownstreamTlsContextSchema, UpstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { collectReferences, defaultMesh } from "../../src/mesh/index.js";
import { createMeshController, createSnapshotCache, startXdsServer, TypeUrl, type MeshController, type RunningXdsServer } from "../../src/xds/index.js";

const Ads = grpc.makeGenericClientConstructor(
  {
    StreamAggregatedResources: {
      path: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
      requestStream: true,
      responseStream: true,
      requestSerialize: (m: MessageInitShape<typeof DiscoveryRequestSchema>) => Buffer.from(toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, m))),
      requestDeserialize: (b: Buffer) => fromBinary(DiscoveryRequestSchema, b),
      responseSerialize: (m: DiscoveryResponse) => Buffer.from(toBinary(DiscoveryResponseSchema, m)),
      responseDeserialize: (b: Buffer) => fromBinary(DiscoveryResponseSchema, b),
    },
  },
  "Ads",
);

const NODE = "sidecar~10.0.0.1~sleep-1.foo~foo.svc.cluster.local";
let server: RunningXdsServer;
let controller: MeshController;
let client: grpc.Client;
let call: grpc.ClientDuplexStream<MessageInitShape<typeof DiscoveryRequestSchema>, DiscoveryResponse>;
const responses: DiscoveryResponse[] = [];

async function ask(typeUrl: string, resourceNames: string[] = []): Promise<DiscoveryResponse> {
  const before = responses.length;
  call.write({ node: { id: NODE, cluster: "sleep.foo" }, typeUrl, resourceNames });
  const end = Date.now() + 5000;
  while (responses.length === before) {
    if (Date.now() > end) throw new Error(`no ${typeUrl} response`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const r = responses[before]!;
  call.write({ typeUrl, versionInfo: r.versionInfo, responseNonce: r.nonce, resourceNames });
  return r;
}

let clusters: Cluster[] = [];
let listeners: Listener[] = [];

test.before(async () => {
  const cache = createSnapshotCache();
  controller = createMeshController({
    cache,
    mesh: defaultMesh,
    translate: { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" },
  });
  server = await startXdsServer({ listen: { host: "127.0.0.1", port: 0 }, cache });
  client = new Ads(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  call = (client as unknown as { StreamAggregatedResources: () => typeof call }).StreamAggregatedResources();
  call.on("data", (r: DiscoveryResponse) => responses.push(r));
  call.on("error", () => {});
  clusters = (await ask(TypeUrl.Cluster)).resources.map((a) => fromBinary(ClusterSchema, a.value));
  listeners = (await ask(TypeUrl.Listener)).resources.map((a) => fromBinary(ListenerSchema, a.value));
});

test.after(async () => {
  call?.end();
  client?.close();
  controller?.close();
  await server?.close(500);
});

test("clusters decode with Envoy's protos and each outbound one has mTLS with SDS default / ROOTCA and the destination's SAN", () => {
  const outbound = clusters.filter((c) => c.name.startsWith("outbound|"));
  assert.is(outbound.length, 4);
  for (const c of outbound) {
    assert.is(c.transportSocket?.name, "envoy.transport_sockets.tls");
    const tls = anyUnpack(c.transportSocket!.configType.value as never, UpstreamTlsContextSchema)!;
    const [, port, , host] = c.name.split("|");
    const [svc, ns] = host!.split(".");
    assert.is(tls.sni, `outbound_.${port}_._.${host}`);
    assert.equal(tls.commonTlsContext!.tlsCertificateSdsSecretConfigs.map((s) => s.name), ["default"]);
    const v = tls.commonTlsContext!.validationContextType;
    assert.is(v.case, "combinedValidationContext");
    if (v.case !== "combinedValidationContext") return;
    assert.is(v.value.validationContextSdsSecretConfig!.name, "ROOTCA");
    const san = v.value.defaultValidationContext!.matchTypedSubjectAltNames[0]!;
    assert.equal(san.matcher!.matchPattern, { case: "exact", value: `spiffe://cluster.local/ns/${ns}/sa/${svc}` });
  }
});

test("every SDS config source the sidecar received serialises to the same bytes and points at the SDS socket", () => {
  const refs = collectReferences({ clusters, listeners, routes: [], endpoints: [] });
  assert.ok(refs.sdsConfigs.length >= 10);
  const hex = new Set(refs.sdsConfigs.map((s) => Buffer.from(toBinary(ConfigSourceSchema, s.sdsConfig!)).toString("hex")));
  assert.is(hex.size, 1);
  const src = refs.sdsConfigs[0]!.sdsConfig!;
  assert.is(src.configSourceSpecifier.case, "apiConfigSource");
  if (src.configSourceSpecifier.case !== "apiConfigSource") return;
  const g = src.configSourceSpecifier.value.grpcServices[0]!.targetSpecifier;
  assert.is(g.case, "googleGrpc");
  if (g.case === "googleGrpc") assert.is(g.value.targetUri, "unix:/var/run/sds/uds_path");
  assert.equal([...refs.secrets].sort(), ["ROOTCA", "default"]);
});

test("the sidecar's inbound listener for sleep (workload port 10081) requires client certificates", () => {
  const inbound = listeners.find((l) => l.name === "inbound_10.0.0.1_10081");
  assert.ok(inbound, listeners.map((l) => l.name).join(", "));
  const down = anyUnpack(inbound!.filterChains[0]!.transportSocket!.configType.value as never, DownstreamTlsContextSchema)!;
  assert.is(down.requireClientCertificate, true);
  assert.is(down.commonTlsContext!.tlsCertificateSdsSecretConfigs[0]!.name, "default");
});

test("like Envoy warming, every EDS and RDS name the clusters and listeners refer to is served", async () => {
  const edsNames = clusters.filter((c) => c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === 3).map((c) => c.name);
  const eds = (await ask(TypeUrl.Endpoint, edsNames)).resources.map((a) => fromBinary(ClusterLoadAssignmentSchema, a.value));
  assert.equal(eds.map((e) => e.clusterName).sort(), [...edsNames].sort());
  // A sidecar's callers connect to the destination sidecar's inbound listener: the endpoint IP and workload port.
  const httpbinFoo = eds.find((e) => e.clusterName === "outbound|8000||httpbin.foo.svc.cluster.local")!;
  const sa = httpbinFoo.endpoints[0]!.lbEndpoints[0]!.hostIdentifier;
  assert.is(sa.case, "endpoint");
  if (sa.case === "endpoint" && sa.value.address?.address.case === "socketAddress") {
    assert.equal([sa.value.address.address.value.address, sa.value.address.address.value.portSpecifier.value], ["127.0.1.1", 18001]);
  }
  const rdsNames = [...collectReferences({ clusters: [], endpoints: [], listeners, routes: [] }).routes];
  const rds = (await ask(TypeUrl.Route, rdsNames)).resources.map((a) => fromBinary(RouteConfigurationSchema, a.value));
  assert.equal(rds.map((r) => r.name).sort(), [...rdsNames].sort());
});

test("the node's ACKs show up in the sync status", async () => {
  await new Promise((r) => setTimeout(r, 100));
  const st = server.syncStatus().find((n) => n.nodeId === NODE)!;
  assert.equal(st.types.map((t) => [t.type, t.synced]), [["CDS", true], ["EDS", true], ["LDS", true], ["RDS", true]]);
});

test.run();
