// Envoy sidecar: outbound clusters (EDS, mTLS to the destination's SPIFFE ID),
// outbound listeners (HTTP via RDS, TCP via tcp_proxy), outbound routes per port,
// inbound listeners on the workload's own service ports (client certs required)
// and inbound clusters to the workload.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { HttpProtocolOptionsSchema } from "../../../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { ClusterSchema, Cluster_DiscoveryType, Cluster_LbPolicy, type Cluster } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { TrafficDirection } from "../../../gen/envoy/config/core/v3/base_pb.js";
import type { FilterChainSchema } from "../../../gen/envoy/config/listener/v3/listener_components_pb.js";
import type { ClusterLoadAssignment } from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema, type Listener } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema, type RouteConfiguration } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { spiffeIdOf } from "../../spiffe/index.js";
import { mtlsModeOf, targetPort, type MeshModel, type MeshPort, type MeshService } from "../model.js";
import type { SidecarIdentity } from "../sidecar-identity.js";
import { workloadServices } from "../sidecar-identity.js";
import { adsConfigSource } from "./config-sources.js";
import { loadAssignment, socketAddress } from "./endpoints.js";
import { hcmFilter, inlineConnectionManager, rdsConnectionManager, tcpProxyFilter, tlsInspector } from "./filters.js";
import {
  alpnFor,
  inboundClusterName,
  inboundListenerName,
  outboundClusterName,
  outboundListenerName,
  outboundSni,
  sidecarRouteName,
} from "./names.js";
import { byName, type ResourceSet, type TranslateOptions } from "./resource-set.js";
import { downstreamTlsSocket, upstreamTlsSocket } from "./tls.js";

const CONNECT_TIMEOUT = { seconds: 10n };
/** Where the inbound side hands plaintext to the application. */
const LOCAL_APP_ADDRESS = "127.0.0.1";
const isHttp = (p: MeshPort) => p.protocol === "HTTP" || p.protocol === "GRPC";
const HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/** HTTP/2 to the upstream (gRPC), the non-deprecated way: typed_extension_protocol_options. */
function http2Upstream() {
  return {
    typedExtensionProtocolOptions: {
      [HTTP_PROTOCOL_OPTIONS]: anyPack(
        HttpProtocolOptionsSchema,
        create(HttpProtocolOptionsSchema, {
          upstreamProtocolOptions: { case: "explicitHttpConfig", value: { protocolConfig: { case: "http2ProtocolOptions", value: {} } } },
        }),
      ),
    },
  };
}

function outboundCluster(mesh: MeshModel, svc: MeshService, port: MeshPort, opts: TranslateOptions): Cluster {
  const cluster = create(ClusterSchema, {
    name: outboundClusterName(port.port, svc.host),
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.EDS },
    connectTimeout: CONNECT_TIMEOUT,
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
    edsClusterConfig: {},
    ...(port.protocol === "GRPC" ? http2Upstream() : {}),
  });
  cluster.edsClusterConfig!.edsConfig = adsConfigSource;
  if (mtlsModeOf(mesh, svc.namespace) !== "DISABLE") {
    cluster.transportSocket = upstreamTlsSocket(
      opts,
      spiffeIdOf(opts.trustDomain, svc),
      outboundSni(port.port, svc.host),
      alpnFor(port.protocol),
    );
  }
  return cluster;
}

function domainsFor(svc: MeshService, port: MeshPort, nodeNamespace: string): string[] {
  const names = [svc.host, `${svc.name}.${svc.namespace}.svc`, `${svc.name}.${svc.namespace}`];
  if (svc.namespace === nodeNamespace) names.push(svc.name);
  return names.flatMap((n) => [n, `${n}:${port.port}`]);
}

function outboundRoutes(mesh: MeshModel, nodeNamespace: string): RouteConfiguration[] {
  return [...httpServicesByPort(mesh)].map(([portNumber, services]) => outboundRoute(portNumber, services, nodeNamespace));
}

function outboundListeners(mesh: MeshModel, bind: string): Listener[] {
  const http = new Set<number>();
  const tcp = new Map<number, MeshService>();
  for (const svc of mesh.services) {
    for (const port of svc.ports) {
      if (isHttp(port)) http.add(port.port);
      else if (!tcp.has(port.port)) tcp.set(port.port, svc); // without VIPs, one TCP service per port
    }
  }
  const listeners: Listener[] = [];
  for (const port of http) {
    listeners.push(
      create(ListenerSchema, {
        name: outboundListenerName(bind, port),
        address: socketAddress(bind, port),
        trafficDirection: TrafficDirection.OUTBOUND,
        filterChains: [{ filters: [hcmFilter(rdsConnectionManager(`outbound_${port}`, sidecarRouteName(port)))] }],
      }),
    );
  }
  for (const [port, svc] of tcp) {
    if (http.has(port)) continue;
    const cluster = outboundClusterName(port, svc.host);
    listeners.push(
      create(ListenerSchema, {
        name: outboundListenerName(bind, port),
        address: socketAddress(bind, port),
        trafficDirection: TrafficDirection.OUTBOUND,
        filterChains: [{ filters: [tcpProxyFilter(cluster, cluster)] }],
      }),
    );
  }
  return listeners;
}

function inbound(mesh: MeshModel, id: SidecarIdentity, opts: TranslateOptions): { listeners: Listener[]; clusters: Cluster[] } {
  const listeners: Listener[] = [];
  const clusters = new Map<string, Cluster>();
  const mode = mtlsModeOf(mesh, id.namespace);
  for (const svc of workloadServices(mesh, id)) {
    const ep = svc.endpoints.find((e) => e.address === id.ip) ?? svc.endpoints[0];
    const ip = id.ip || ep?.address || "0.0.0.0";
    for (const port of svc.ports) {
      // The inbound listener takes the workload's own port on the pod IP (where
      // callers' EDS endpoints point) and hands the plaintext to the app on
      // 127.0.0.1 at that port, as Istio's inbound clusters did before 1.10.
      const workloadPort = ep ? targetPort(svc, port, ep) : port.port;
      // Two services of one workload on the same port share its one inbound listener (the first wins).
      if (listeners.some((l) => l.name === inboundListenerName(ip, workloadPort))) continue;
      const clusterName = inboundClusterName(port.port);
      if (!clusters.has(clusterName)) {
        clusters.set(
          clusterName,
          create(ClusterSchema, {
            name: clusterName,
            clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
            connectTimeout: CONNECT_TIMEOUT,
            lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
            ...(port.protocol === "GRPC" ? http2Upstream() : {}),
            loadAssignment: {
              clusterName,
              endpoints: [{ lbEndpoints: [{ hostIdentifier: { case: "endpoint", value: { address: socketAddress(LOCAL_APP_ADDRESS, workloadPort) } } }] }],
            },
          }),
        );
      }
      const statPrefix = `inbound_${port.port}`;
      const filter = isHttp(port)
        ? hcmFilter(
            inlineConnectionManager(statPrefix, {
              name: `inbound|${port.port}`,
              validateClusters: false,
              virtualHosts: [
                {
                  name: `inbound|${port.name}|${port.port}`,
                  domains: ["*"],
                  routes: [
                    {
                      name: "default",
                      match: { pathSpecifier: { case: "prefix" as const, value: "/" } },
                      action: { case: "route" as const, value: { clusterSpecifier: { case: "cluster" as const, value: clusterName } } },
                    },
                  ],
                },
              ],
            }),
          )
        : tcpProxyFilter(statPrefix, clusterName);
      const alpn = port.protocol === "TCP" ? [] : ["h2", "http/1.1"];
      const chains: MessageInitShape<typeof FilterChainSchema>[] = [];
      if (mode !== "DISABLE") {
        chains.push({
          name: "mtls",
          ...(mode === "PERMISSIVE" ? { filterChainMatch: { transportProtocol: "tls" } } : {}),
          filters: [filter],
          transportSocket: downstreamTlsSocket(opts, alpn),
        });
      }
      if (mode !== "STRICT") {
        chains.push({
          name: "plaintext",
          ...(mode === "PERMISSIVE" ? { filterChainMatch: { transportProtocol: "raw_buffer" } } : {}),
          filters: [filter],
        });
      }
      listeners.push(
        create(ListenerSchema, {
          name: inboundListenerName(ip, workloadPort),
          address: socketAddress(ip, workloadPort),
          trafficDirection: TrafficDirection.INBOUND,
          listenerFilters: mode === "PERMISSIVE" ? [tlsInspector()] : [],
          filterChains: chains,
        }),
      );
    }
  }
  return { listeners, clusters: [...clusters.values()] };
}

/** "ip:port" of a listener bound to a socket address ("" otherwise). */
export function listenerAddress(l: Listener): string {
  const a = l.address?.address;
  return a?.case === "socketAddress" ? `${a.value.address}:${a.value.portSpecifier.value ?? ""}` : "";
}

/** The node's own SDS socket and token file (node metadata) over the server's defaults. */
export function sidecarOptions(id: SidecarIdentity, meshOpts: TranslateOptions): TranslateOptions {
  return {
    ...meshOpts,
    sdsSocketPath: id.sdsSocketPath ?? meshOpts.sdsSocketPath,
    tokenPath: id.tokenPath ?? meshOpts.tokenPath,
  };
}

/**
 * What a sidecar's outbound clusters depend on besides the mesh: every sidecar with the
 * same key is served byte-identical outbound clusters (the SDS config source names the
 * node's socket and token file).
 */
export function clusterViewKey(opts: TranslateOptions): string {
  return JSON.stringify([opts.trustDomain, opts.sdsMode ?? "google_grpc", opts.sdsSocketPath, opts.tokenPath]);
}

/** Outbound EDS clusters of one service (one per port), mTLS unless its namespace disables it. */
export function serviceOutboundClusters(mesh: MeshModel, svc: MeshService, opts: TranslateOptions): Cluster[] {
  return svc.ports.map((port) => outboundCluster(mesh, svc, port, opts));
}

/** EDS of one service: a load assignment per port (the same for every sidecar). */
export function serviceLoadAssignments(svc: MeshService): ClusterLoadAssignment[] {
  // A caller connects to the destination sidecar's inbound listener: <pod IP>:<workload port>.
  return svc.ports.map((port) => loadAssignment(outboundClusterName(port.port, svc.host), svc, port));
}

/** The HTTP services of each port, in mesh order: what the outbound route of a port is made of. */
export function httpServicesByPort(mesh: MeshModel): Map<number, MeshService[]> {
  const byPort = new Map<number, MeshService[]>();
  for (const svc of mesh.services) {
    for (const port of svc.ports.filter(isHttp)) byPort.set(port.port, [...(byPort.get(port.port) ?? []), svc]);
  }
  return byPort;
}

/** The outbound route configuration of one port, as a sidecar in `nodeNamespace` sees it. */
export function outboundRoute(portNumber: number, services: readonly MeshService[], nodeNamespace: string): RouteConfiguration {
  const entries = services.map((svc) => ({ svc, port: svc.ports.find((p) => p.port === portNumber && isHttp(p))! }));
  return create(RouteConfigurationSchema, {
    name: sidecarRouteName(portNumber),
    validateClusters: false,
    virtualHosts: entries.map(({ svc, port }) => ({
      name: `${svc.host}:${port.port}`,
      domains: domainsFor(svc, port, nodeNamespace),
      routes: [
        {
          name: "default",
          match: { pathSpecifier: { case: "prefix" as const, value: "/" } },
          action: { case: "route" as const, value: { clusterSpecifier: { case: "cluster" as const, value: outboundClusterName(port.port, svc.host) } } },
        },
      ],
    })),
  });
}

/**
 * What only this sidecar is served: its inbound listeners and clusters, and the outbound
 * listeners bound to its pod IP (HTTP ones name their routes through RDS).
 */
export function sidecarOwnResources(mesh: MeshModel, id: SidecarIdentity, opts: TranslateOptions): { listeners: Listener[]; clusters: Cluster[] } {
  // Outbound listeners bind the pod IP, so sidecars with distinct IPs share a host.
  const bind = id.ip || opts.outboundBindAddress || "127.0.0.1";
  const inb = inbound(mesh, id, opts);
  // An inbound listener owns its address: an outbound one on the same ip:port is left out.
  const taken = new Set(inb.listeners.map(listenerAddress));
  const outbound = outboundListeners(mesh, bind).filter((l) => !taken.has(listenerAddress(l)));
  return { listeners: byName([...outbound, ...inb.listeners]), clusters: byName(inb.clusters) };
}

export function translateSidecar(mesh: MeshModel, id: SidecarIdentity, meshOpts: TranslateOptions): ResourceSet {
  const opts = sidecarOptions(id, meshOpts);
  const own = sidecarOwnResources(mesh, id, opts);
  return {
    clusters: byName([...mesh.services.flatMap((svc) => serviceOutboundClusters(mesh, svc, opts)), ...own.clusters]),
    endpoints: mesh.services.flatMap(serviceLoadAssignments).sort((a, b) => (a.clusterName < b.clusterName ? -1 : 1)),
    listeners: own.listeners,
    routes: byName(outboundRoutes(mesh, id.namespace)),
  };
}
