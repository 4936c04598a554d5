// The translator: what a sidecar and a proxyless gRPC client are served.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { equals, toBinary, toJson } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConfigSourceSchema } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import type { Cluster } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import type { Listener } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { HttpConnectionManagerSchema, type HttpConnectionManager } from "../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { TcpProxySchema } from "../../gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.js";
import { DownstreamTlsContextSchema, UpstreamTlsContextSchema, type UpstreamTlsContext } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import {
  checkConsistency,
  collectReferences,
  defaultMesh,
  parseMesh,
  resourceTypeRegistry,
  translateForNode,
  type TranslateOptions,
} from "../../src/mesh/index.js";

const opts: TranslateOptions = { trustDomain: "example.org", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" };
const modes = parseMesh(readFileSync("fixtures/mesh/modes.yaml", "utf8"), "modes.yaml");
const sleepFoo = { id: "sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local" };
const proxyless = { id: "grpc-1", metadata: { GENERATOR: "grpc" } };

function upstreamTls(c: Cluster): UpstreamTlsContext | undefined {
  if (!c.transportSocket) return undefined;
  assert.is(c.transportSocket.name, "envoy.transport_sockets.tls");
  assert.is(c.transportSocket.configType.case, "typedConfig");
  return anyUnpack(c.transportSocket.configType.value as never, UpstreamTlsContextSchema);
}
function hcmOf(l: Listener, chain = 0): HttpConnectionManager {
  const f = l.filterChains[chain]!.filters[0]!;
  assert.is(f.name, "envoy.filters.network.http_connection_manager");
  return anyUnpack(f.configType.value as never, HttpConnectionManagerSchema)!;
}
const cluster = (set: { clusters: Cluster[] }, name: string) => {
  const c = set.clusters.find((x) => x.name === name);
  assert.ok(c, `cluster ${name} missing from ${set.clusters.map((x) => x.name).join(", ")}`);
  return c!;
};

test("a sidecar gets an EDS cluster per service port, with mTLS to the destination's SPIFFE ID", () => {
  const set = translateForNode(defaultMesh, sleepFoo, opts);
  const outbound = set.clusters.filter((c) => c.name.startsWith("outbound|")).map((c) => c.name);
  assert.equal(outbound, [
    "outbound|8000||httpbin.bar.svc.cluster.local",
    "outbound|8000||httpbin.foo.svc.cluster.local",
    "outbound|80||sleep.bar.svc.cluster.local",
    "outbound|80||sleep.foo.svc.cluster.local",
  ]);
  const c = cluster(set, "outbound|8000||httpbin.bar.svc.cluster.local");
  assert.is(c.clusterDiscoveryType.case, "type");
  assert.is(c.edsClusterConfig?.edsConfig?.configSourceSpecifier.case, "ads");
  const tls = upstreamTls(c)!;
  assert.is(tls.sni, "outbound_.8000_._.httpbin.bar.svc.cluster.local");
  const common = tls.commonTlsContext!;
  assert.equal(common.alpnProtocols, ["istio-peer-exchange", "istio"]);
  assert.equal(common.tlsCertificateSdsSecretConfigs.map((s) => s.name), ["default"]);
  assert.is(common.validationContextType.case, "combinedValidationContext");
  const combined = common.validationContextType.value as { defaultValidationContext: { matchTypedSubjectAltNames: Array<{ sanType: number; matcher: { matchPattern: { case: string; value: string } } }> }; validationContextSdsSecretConfig: { name: string } };
  assert.is(combined.validationContextSdsSecretConfig.name, "ROOTCA");
  const san = combined.defaultValidationContext.matchTypedSubjectAltNames;
  assert.is(san.length, 1);
  assert.is(san[0]!.sanType, 3, "SAN type URI");
  assert.equal(san[0]!.matcher.matchPattern, { case: "exact", value: "spiffe://example.org/ns/bar/sa/httpbin" });
});

test("a GRPC port's cluster speaks h2 (ALPN h2, HTTP/2 upstream)", () => {
  const set = translateForNode(modes, { id: "sidecar~10.0.2.1~web-0.permissive~permissive.svc.cluster.local" }, opts);
  const c = cluster(set, "outbound|7070||echo.strict.svc.cluster.local");
  const opts2 = c.typedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
  assert.ok(opts2, "typed_extension_protocol_options HttpProtocolOptions");
  assert.equal(toJson(AnySchema, opts2!, { registry: resourceTypeRegistry }), {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    explicitHttpConfig: { http2ProtocolOptions: {} },
  });
  assert.equal(upstreamTls(c)!.commonTlsContext!.alpnProtocols, ["h2"]);
});

test("every SdsSecretConfig in a resource set carries a byte-identical SDS config source of the seeds' shape", () => {
  for (const [mesh, node] of [[defaultMesh, sleepFoo], [modes, { id: "sidecar~10.0.2.1~web-0.permissive~permissive.svc.cluster.local" }]] as const) {
    const refs = collectReferences(translateForNode(mesh, node, opts));
    assert.ok(refs.sdsConfigs.length >= 4, `only ${refs.sdsConfigs.length} SDS references`);
    const bytes = refs.sdsConfigs.map((s) => Buffer.from(toBinary(ConfigSourceSchema, s.sdsConfig!)).toString("hex"));
    assert.is(new Set(bytes).size, 1, "SDS config sources differ");
  }
  const refs = collectReferences(translateForNode(defaultMesh, sleepFoo, opts));
  assert.equal(toJson(ConfigSourceSchema, refs.sdsConfigs[0]!.sdsConfig!, { registry: resourceTypeRegistry }), {
    apiConfigSource: {
      apiType: "GRPC",
      transportApiVersion: "V3",
      grpcServices: [
        {
          googleGrpc: {
            targetUri: "unix:/var/run/sds/uds_path",
            channelCredentials: { localCredentials: {} },
            callCredentials: [
              {
                fromPlugin: {
                  name: "envoy.grpc_credentials.file_based_metadata",
                  typedConfig: {
                    "@type": "type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig",
                    secretData: { filename: "/var/run/secrets/tokens/istio-token" },
                    headerKey: "istio_sds_credentials_header-bin",
                  },
                },
              },
            ],
            statPrefix: "sdsstat",
            credentialsFactoryName: "envoy.grpc_credentials.file_based_metadata",
          },
        },
      ],
    },
    resourceApiVersion: "V3",
  });
});

test("sdsMode envoy_grpc points every SDS reference at the static sds-grpc cluster", () => {
  const refs = collectReferences(translateForNode(defaultMesh, sleepFoo, { ...opts, sdsMode: "envoy_grpc" }));
  for (const s of refs.sdsConfigs) {
    assert.equal(toJson(ConfigSourceSchema, s.sdsConfig!), {
      apiConfigSource: { apiType: "GRPC", transportApiVersion: "V3", grpcServices: [{ envoyGrpc: { clusterName: "sds-grpc" } }] },
      resourceApiVersion: "V3",
    });
  }
});

test("a STRICT sidecar's inbound listener on <pod IP>:<workload port> requires client certificates and hands off to 127.0.0.1", () => {
  const set = translateForNode(defaultMesh, sleepFoo, opts);
  const inbound = set.listeners.filter((l) => l.name.startsWith("inbound_"));
  assert.equal(inbound.map((l) => l.name), ["inbound_127.0.1.2_10081"]);
  const l = inbound[0]!;
  assert.is(l.filterChains.length, 1);
  assert.is(l.listenerFilters.length, 0);
  const ts = l.filterChains[0]!.transportSocket!;
  const down = anyUnpack(ts.configType.value as never, DownstreamTlsContextSchema)!;
  assert.is(down.requireClientCertificate, true);
  assert.equal(down.commonTlsContext!.tlsCertificateSdsSecretConfigs.map((s) => s.name), ["default"]);
  const hcm = hcmOf(l);
  assert.is(hcm.routeSpecifier.case, "routeConfig");
  assert.is(hcm.httpFilters.at(-1)!.name, "envoy.filters.http.router");
  const inCluster = cluster(set, "inbound|80||");
  const ep = inCluster.loadAssignment!.endpoints[0]!.lbEndpoints[0]!.hostIdentifier.value as { address: { address: { value: { address: string; portSpecifier: { value: number } } } } };
  assert.equal([ep.address.address.value.address, ep.address.address.value.portSpecifier.value], ["127.0.0.1", 10081]);
});

test("a PERMISSIVE sidecar accepts mTLS and plaintext (tls_inspector, two filter chains)", () => {
  const set = translateForNode(modes, { id: "sidecar~10.0.2.1~web-0.permissive~permissive.svc.cluster.local" }, opts);
  const inbound = set.listeners.filter((l) => l.name.startsWith("inbound_"));
  assert.equal(inbound.map((l) => l.name), ["inbound_10.0.2.1_18080", "inbound_10.0.2.1_19090"]);
  for (const l of inbound) {
    assert.equal(l.listenerFilters.map((f) => f.name), ["envoy.filters.listener.tls_inspector"]);
    assert.equal(l.filterChains.map((c) => [c.filterChainMatch?.transportProtocol, c.transportSocket !== undefined]), [["tls", true], ["raw_buffer", false]]);
  }
  const tcp = inbound[1]!.filterChains[0]!.filters[0]!;
  assert.is(tcp.name, "envoy.filters.network.tcp_proxy");
  assert.is(anyUnpack(tcp.configType.value as never, TcpProxySchema)!.clusterSpecifier.value, "inbound|9090||");
});

test("a DISABLE sidecar serves plaintext only, and clusters to DISABLE namespaces carry no TLS", () => {
  const set = translateForNode(modes, { id: "sidecar~10.0.3.1~db-0.legacy~legacy.svc.cluster.local" }, opts);
  const l = set.listeners.find((x) => x.name === "inbound_10.0.3.1_5432")!;
  assert.equal(l.filterChains.map((c) => c.transportSocket), [undefined]);
  assert.is(upstreamTls(cluster(set, "outbound|5432||db.legacy.svc.cluster.local")), undefined);
  assert.ok(upstreamTls(cluster(set, "outbound|8080||web.permissive.svc.cluster.local")));
});

test("outbound HTTP ports are RDS-over-ADS listeners on the pod IP with the router last; TCP ports use tcp_proxy", () => {
  const set = translateForNode(modes, { id: "sidecar~10.0.1.1~echo-0.strict~strict.svc.cluster.local" }, opts);
  const http = set.listeners.find((l) => l.name === "10.0.1.1_8080")!;
  const hcm = hcmOf(http);
  assert.is(hcm.routeSpecifier.case, "rds");
  const rds = hcm.routeSpecifier.value as { routeConfigName: string; configSource: { configSourceSpecifier: { case: string }; resourceApiVersion: number } };
  assert.is(rds.routeConfigName, "8080");
  assert.is(rds.configSource.configSourceSpecifier.case, "ads");
  assert.is(rds.configSource.resourceApiVersion, 2, "V3");
  assert.equal(hcm.httpFilters.map((f) => f.name), ["envoy.filters.http.router"]);
  const route = set.routes.find((r) => r.name === "8080")!;
  assert.ok(route.virtualHosts[0]!.domains.includes("web.permissive.svc.cluster.local:8080"));
  const tcp = set.listeners.find((l) => l.name === "10.0.1.1_5432")!;
  assert.is(anyUnpack(tcp.filterChains[0]!.filters[0]!.configType.value as never, TcpProxySchema)!.clusterSpecifier.value, "outbound|5432||db.legacy.svc.cluster.local");
});

test("a proxyless gRPC node gets API listeners, routes, EDS clusters and localities, and no SDS reference", () => {
  const set = translateForNode(modes, proxyless, opts);
  assert.equal(set.listeners.map((l) => l.name), ["echo.strict.svc.cluster.local:7070", "web.permissive.svc.cluster.local:8080"]);
  const l = set.listeners[0]!;
  assert.is(l.filterChains.length, 0);
  const hcm = anyUnpack(l.apiListener!.apiListener!, HttpConnectionManagerSchema)!;
  assert.is(hcm.routeSpecifier.case, "rds");
  const rds = hcm.routeSpecifier.value as { routeConfigName: string; configSource: { configSourceSpecifier: { case: string }; resourceApiVersion: number } };
  assert.equal([rds.routeConfigName, rds.configSource.configSourceSpecifier.case, rds.configSource.resourceApiVersion], ["echo.strict.svc.cluster.local:7070", "ads", 2]);
  assert.is(hcm.httpFilters.at(-1)!.name, "envoy.filters.http.router");
  const vh = set.routes[0]!.virtualHosts[0]!;
  assert.ok(vh.domains.includes("echo.strict.svc.cluster.local:7070") && vh.domains.includes("echo.strict.svc.cluster.local"));
  const c = set.clusters[0]!;
  assert.is(c.name, "outbound|7070||echo.strict.svc.cluster.local");
  assert.is(c.transportSocket, undefined);
  assert.is(c.edsClusterConfig!.edsConfig!.configSourceSpecifier.case, "ads");
  const cla = set.endpoints.find((e) => e.clusterName === c.name)!;
  assert.equal(
    cla.endpoints.map((e) => [e.locality?.zone, e.loadBalancingWeight, e.lbEndpoints.map((x) => x.loadBalancingWeight)]),
    [["eu-west1-a", 3, [3]], ["eu-west1-b", 1, [1]]],
  );
  const refs = collectReferences(set);
  assert.is(refs.secrets.size, 0);
  assert.is(refs.sdsConfigs.length, 0);
});

test("node metadata NAMESPACE / SERVICE_ACCOUNT choose the workload when the node id is not Istio's", () => {
  const set = translateForNode(defaultMesh, { id: "my-envoy", metadata: { NAMESPACE: "bar", SERVICE_ACCOUNT: "httpbin" } }, opts);
  assert.equal(set.listeners.filter((l) => l.name.startsWith("inbound_")).map((l) => l.name), ["inbound_127.0.2.1_18002"]);
});

test("the consistency check names what a resource refers to that does not exist", () => {
  const set = translateForNode(defaultMesh, sleepFoo, opts);
  assert.equal(checkConsistency(set), []);
  const broken = { ...set, routes: set.routes.filter((r) => r.name !== "8000"), endpoints: set.endpoints.slice(1) };
  const problems = checkConsistency(broken);
  assert.ok(problems.some((p) => p.includes('route configuration "8000"')), problems.join("\n"));
  assert.ok(problems.some((p) => p.includes("EDS load assignment")), problems.join("\n"));
});

test("a sidecar whose workload port equals a service port keeps its inbound listener; the clashing outbound one is left out", () => {
  const mesh = parseMesh("services:\n  - name: web\n    namespace: foo\n    ports: [{port: 8000, protocol: HTTP}]\n    endpoints: [{address: 127.0.0.1, port: 8000}]\n");
  const set = translateForNode(mesh, { id: "sidecar~127.0.0.1~web-0.foo~foo.svc.cluster.local" }, opts);
  assert.equal(set.listeners.map((l) => l.name), ["inbound_127.0.0.1_8000"]);
  assert.equal(checkConsistency(set), []);
  const clash = { ...set, listeners: [...set.listeners, ...translateForNode(mesh, { id: "sidecar~10.9.9.9~x-0.bar~bar.svc.cluster.local" }, opts).listeners] };
  clash.listeners.push({ ...set.listeners[0]!, name: "dup" });
  assert.ok(checkConsistency(clash).some((p) => p.includes("both bind 127.0.0.1:8000")));
});

test("sidecars with distinct pod IPs bind distinct addresses: outbound <pod IP>:<service port>, inbound <pod IP>:<workload port>", () => {
  const a = translateForNode(defaultMesh, { id: "sidecar~127.0.1.1~httpbin-1.foo~foo.svc.cluster.local" }, opts);
  const b = translateForNode(defaultMesh, { id: "sidecar~127.0.2.1~httpbin-1.bar~bar.svc.cluster.local" }, opts);
  const bound = (set: typeof a) =>
    set.listeners
      .map((l) => (l.address?.address.case === "socketAddress" ? `${l.address.address.value.address}:${l.address.address.value.portSpecifier.value}` : ""))
      .sort();
  assert.equal(bound(a), ["127.0.1.1:18001", "127.0.1.1:80", "127.0.1.1:8000"]);
  assert.equal(bound(b), ["127.0.2.1:18002", "127.0.2.1:80", "127.0.2.1:8000"]);
  // A caller's EDS endpoint is the callee's inbound listener.
  const cla = a.endpoints.find((e) => e.clusterName === "outbound|8000||httpbin.bar.svc.cluster.local")!;
  const ep = cla.endpoints[0]!.lbEndpoints[0]!.hostIdentifier.value as { address: { address: { value: { address: string; portSpecifier: { value: number } } } } };
  assert.equal([ep.address.address.value.address, ep.address.address.value.portSpecifier.value], ["127.0.2.1", 18002]);
});

test("node metadata SDS_SOCKET / SDS_TOKEN_PATH name the node's own SDS socket and token file in every SDS reference", () => {
  const node = { id: "sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local", metadata: { SDS_SOCKET: "/run/n1/uds", SDS_TOKEN_PATH: "/run/n1/token" } };
  const refs = collectReferences(translateForNode(defaultMesh, node, opts));
  assert.ok(refs.sdsConfigs.length > 0);
  for (const s of refs.sdsConfigs) {
    const json = JSON.stringify(toJson(ConfigSourceSchema, s.sdsConfig!, { registry: resourceTypeRegistry }));
    assert.ok(json.includes('"targetUri":"unix:/run/n1/uds"'), json);
    assert.ok(json.includes('"filename":"/run/n1/token"'), json);
  }
});

test("translation is pure: same input, equal output, the model untouched", () => {
  const before = JSON.stringify(modes);
  const a = translateForNode(modes, proxyless, opts);
  const b = translateForNode(modes, proxyless, opts);
  assert.ok(a.clusters.every((c, i) => equals(resourceTypeRegistry.getMessage("envoy.config.cluster.v3.Cluster")!, c, b.clusters[i]!)));
  assert.is(JSON.stringify(modes), before);
});

test.run();
