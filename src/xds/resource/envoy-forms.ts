// A node's snapshot in Envoy's own forms:
// - `snapshotConfigDump`: the envoy.admin.v3.ConfigDump a sidecar synced from this
//   snapshot prints at /config_dump?include_eds (dynamic clusters, the endpoints
//   Envoy holds for each cluster, dynamic listeners, the routes inlined in
//   listeners as static route configs, dynamic routes, the SDS secrets the
//   resources reference), sensitive fields redacted as Envoy redacts them;
// - `staticBootstrap`: a bootstrap that `envoy -c` runs without a control plane:
//   EDS clusters turned STATIC with their load assignment inlined, RDS routes
//   inlined into their HTTP connection managers, SDS references kept.
import { anyPack, anyUnpack, AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { clone, create, type DescMessage, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { ConfigDumpSchema, BootstrapConfigDumpSchema, SecretsConfigDumpSchema, type ConfigDump } from "../../../gen/envoy/admin/v3/config_dump_pb.js";
import {
  ClustersConfigDumpSchema,
  EndpointsConfigDumpSchema,
  ListenersConfigDumpSchema,
  RoutesConfigDumpSchema,
  ScopedRoutesConfigDumpSchema,
} from "../../../gen/envoy/admin/v3/config_dump_shared_pb.js";
import { BootstrapSchema, type Bootstrap } from "../../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { Cluster_DiscoveryType, ClusterSchema, type Cluster } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { NodeSchema } from "../../../gen/envoy/config/core/v3/base_pb.js";
import { HealthStatus } from "../../../gen/envoy/config/core/v3/health_check_pb.js";
import { Endpoint_HealthCheckConfigSchema } from "../../../gen/envoy/config/endpoint/v3/endpoint_components_pb.js";
import { HttpProtocolOptionsSchema } from "../../../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { ClusterLoadAssignment_PolicySchema, ClusterLoadAssignmentSchema, type ClusterLoadAssignment } from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { LocalitySchema } from "../../../gen/envoy/config/core/v3/base_pb.js";
import { ListenerSchema, type Listener } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema, type RouteConfiguration } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { SecretSchema } from "../../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { HttpConnectionManagerSchema } from "../../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { envoyTypeRegistry, redactSensitive } from "../../envoy/index.js";
import { SDS_CLUSTER_NAME, redactNodeMetadata, type NodeInfo, type ResourceSet } from "../../mesh/index.js";
import type { Snapshot } from "../cache/snapshot.js";
import { TypeUrl } from "./type-urls.js";

/** The xDS Node of a NodeInfo (metadata as a Struct). */
export function nodeMessage(node: NodeInfo): MessageInitShape<typeof NodeSchema> {
  return { id: node.id, cluster: node.cluster ?? "", metadata: (node.metadata ?? {}) as never };
}

function unpackAs<Desc extends DescMessage>(schema: Desc, any: Any) {
  const m = anyUnpack(any, schema);
  if (!m) throw new Error(`expected ${schema.typeName}, got ${any.typeUrl}`);
  return m;
}

/** Calls `onHcm` for every HTTP connection manager of a listener (filter chains and API listener). */
function forEachHcm(l: Listener, onHcm: (hcm: Any, replace: (next: Any) => void) => void): void {
  for (const chain of [...l.filterChains, ...(l.defaultFilterChain ? [l.defaultFilterChain] : [])]) {
    for (const f of chain.filters) {
      const tc = f.configType.case === "typedConfig" ? f.configType.value : undefined;
      if (tc && tc.typeUrl.endsWith(`/${HttpConnectionManagerSchema.typeName}`)) onHcm(tc, (next) => (f.configType = { case: "typedConfig", value: next }));
    }
  }
  const api = l.apiListener?.apiListener;
  if (api && api.typeUrl.endsWith(`/${HttpConnectionManagerSchema.typeName}`)) onHcm(api, (next) => (l.apiListener!.apiListener = next));
}

const TLS_CONTEXT = "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext";

/** The SDS secret names referenced by a message tree (Any payloads unpacked), by kind, in first-seen order. */
function sdsReferences(schema: DescMessage, msg: Message, out: Map<string, "tlsCertificate" | "validationContext">): void {
  if (schema.typeName === TLS_CONTEXT) {
    const c = msg as unknown as {
      tlsCertificateSdsSecretConfigs: { name: string }[];
      validationContextType: { case?: string; value?: { name?: string; validationContextSdsSecretConfig?: { name: string } } };
    };
    for (const s of c.tlsCertificateSdsSecretConfigs) if (!out.has(s.name)) out.set(s.name, "tlsCertificate");
    const v = c.validationContextType;
    const name = v.case === "validationContextSdsSecretConfig" ? v.value?.name : v.case === "combinedValidationContext" ? v.value?.validationContextSdsSecretConfig?.name : undefined;
    if (name && !out.has(name)) out.set(name, "validationContext");
  }
  const m = msg as unknown as Record<string, unknown>;
  const visit = (desc: DescMessage, v: unknown) => {
    if (desc.typeName === AnySchema.typeName) {
      const any = v as Any;
      const inner = envoyTypeRegistry.getMessage(any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1));
      const unpacked = inner ? anyUnpack(any, envoyTypeRegistry) : undefined;
      if (inner && unpacked) sdsReferences(inner, unpacked, out);
    } else if (typeof v === "object" && v !== null && "$typeName" in v) sdsReferences(desc, v as Message, out);
  };
  for (const f of schema.fields) {
    const value = f.oneof
      ? (m[f.oneof.localName] as { case?: string; value?: unknown }).case === f.localName
        ? (m[f.oneof.localName] as { value?: unknown }).value
        : undefined
      : m[f.localName];
    if (value === undefined) continue;
    if (f.fieldKind === "message") visit(f.message, value);
    else if (f.fieldKind === "list" && f.listKind === "message") for (const v of value as unknown[]) visit(f.message, v);
    else if (f.fieldKind === "map" && f.mapKind === "message") for (const v of Object.values(value as object)) visit(f.message, v);
  }
}

/**
 * The endpoints Envoy holds for a cluster, as /config_dump?include_eds prints them:
 * every locality and host carries its defaults (empty locality, empty health check
 * config, HEALTHY, weight 1) and the policy its overprovisioning factor (140).
 * A locality weight stays unset when none was given (Envoy prints 0).
 */
function endpointsAsEnvoyHolds(cla: ClusterLoadAssignment): ClusterLoadAssignment {
  const policy = cla.policy ? clone(ClusterLoadAssignment_PolicySchema, cla.policy) : create(ClusterLoadAssignment_PolicySchema);
  policy.overprovisioningFactor ??= 140;
  return create(ClusterLoadAssignmentSchema, {
    clusterName: cla.clusterName,
    endpoints: cla.endpoints.map((group) => ({
      ...group,
      locality: group.locality ?? create(LocalitySchema),
      lbEndpoints: group.lbEndpoints.map((e) => ({
        ...e,
        hostIdentifier:
          e.hostIdentifier.case === "endpoint"
            ? { case: "endpoint" as const, value: { ...e.hostIdentifier.value, healthCheckConfig: e.hostIdentifier.value.healthCheckConfig ?? create(Endpoint_HealthCheckConfigSchema) } }
            : e.hostIdentifier,
        healthStatus: e.healthStatus === HealthStatus.UNKNOWN ? HealthStatus.HEALTHY : e.healthStatus,
        loadBalancingWeight: e.loadBalancingWeight ?? 1,
      })),
    })),
    policy,
  });
}

/** The routes a listener carries inline (HCM route_config): Envoy lists them as static route configs. */
function inlineRoutes(l: Listener): RouteConfiguration[] {
  const out: RouteConfiguration[] = [];
  forEachHcm(l, (any) => {
    const hcm = unpackAs(HttpConnectionManagerSchema, any);
    if (hcm.routeSpecifier.case === "routeConfig") out.push(hcm.routeSpecifier.value);
  });
  return out;
}

/**
 * What an Envoy synced from `snapshot` prints at /config_dump?include_eds (without
 * last_updated, which only a live Envoy knows; secrets without their key material,
 * which the SDS agent issues at run time).
 */
export function snapshotConfigDump(node: NodeInfo, snapshot: Snapshot): ConfigDump {
  const typeOf = (url: string) => snapshot.get(url);
  const clusters = typeOf(TypeUrl.Cluster);
  const endpoints = typeOf(TypeUrl.Endpoint);
  const listeners = typeOf(TypeUrl.Listener);
  const routes = typeOf(TypeUrl.Route);
  const clusterMsgs = [...(clusters?.resources.values() ?? [])].map((r) => unpackAs(ClusterSchema, r.any));
  const listenerMsgs = [...(listeners?.resources.values() ?? [])].map((r) => unpackAs(ListenerSchema, r.any));

  // Every cluster's endpoints: an EDS cluster's from EDS, any other's from its load_assignment.
  const endpointConfigs = clusterMsgs.flatMap((c) => {
    const isEds = c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS;
    const edsName = c.edsClusterConfig?.serviceName || c.name;
    const eds = isEds ? endpoints?.resources.get(edsName) : undefined;
    const cla = eds ? unpackAs(ClusterLoadAssignmentSchema, eds.any) : c.loadAssignment;
    return cla ? [{ endpointConfig: anyPack(ClusterLoadAssignmentSchema, endpointsAsEnvoyHolds(cla)) }] : [];
  });

  const secrets = new Map<string, "tlsCertificate" | "validationContext">();
  for (const c of clusterMsgs) sdsReferences(ClusterSchema, c, secrets);
  for (const l of listenerMsgs) sdsReferences(ListenerSchema, l, secrets);

  const dump = create(ConfigDumpSchema, {
    configs: [
      // The node as meshkey uses it: metadata it does not read is redacted, never echoed verbatim.
      anyPack(BootstrapConfigDumpSchema, create(BootstrapConfigDumpSchema, { bootstrap: { node: nodeMessage(redactNodeMetadata(node)) } })),
      anyPack(
        ClustersConfigDumpSchema,
        create(ClustersConfigDumpSchema, {
          versionInfo: clusters?.version ?? "",
          dynamicActiveClusters: [...(clusters?.resources.values() ?? [])].map((r) => ({ versionInfo: clusters!.version, cluster: r.any })),
        }),
      ),
      anyPack(EndpointsConfigDumpSchema, create(EndpointsConfigDumpSchema, { dynamicEndpointConfigs: endpointConfigs })),
      anyPack(
        ListenersConfigDumpSchema,
        create(ListenersConfigDumpSchema, {
          versionInfo: listeners?.version ?? "",
          dynamicListeners: [...(listeners?.resources.values() ?? [])].map((r) => ({ name: r.name, activeState: { versionInfo: listeners!.version, listener: r.any } })),
        }),
      ),
      anyPack(ScopedRoutesConfigDumpSchema, create(ScopedRoutesConfigDumpSchema)),
      anyPack(
        RoutesConfigDumpSchema,
        create(RoutesConfigDumpSchema, {
          staticRouteConfigs: listenerMsgs.flatMap(inlineRoutes).map((rc) => ({ routeConfig: anyPack(RouteConfigurationSchema, rc) })),
          dynamicRouteConfigs: [...(routes?.resources.values() ?? [])].map((r) => ({ versionInfo: routes!.version, routeConfig: r.any })),
        }),
      ),
      anyPack(
        SecretsConfigDumpSchema,
        create(SecretsConfigDumpSchema, {
          dynamicActiveSecrets: [...secrets].map(([name, kind]) => ({
            name,
            secret: anyPack(SecretSchema, create(SecretSchema, { name, type: kind === "tlsCertificate" ? { case: "tlsCertificate", value: {} } : { case: "validationContext", value: {} } })),
          })),
        }),
      ),
    ],
  });
  return redactSensitive(ConfigDumpSchema, dump);
}

export interface StaticBootstrapOptions {
  /** Admin port on 127.0.0.1. */
  adminPort: number;
  /** The SDS socket, for the static `sds-grpc` cluster that sdsMode envoy_grpc references. */
  sdsSocketPath: string;
  sdsMode?: "google_grpc" | "envoy_grpc";
}

/**
 * A static bootstrap of a node's resources: `envoy -c` runs it. EDS clusters
 * become STATIC with their ClusterLoadAssignment inline; an HCM's RDS reference
 * becomes its RouteConfiguration inline; TLS contexts keep their SDS references
 * (default, ROOTCA over the SDS socket), so the node agent still provides the
 * certificates.
 */
export function staticBootstrap(node: NodeInfo, set: ResourceSet, opts: StaticBootstrapOptions): Bootstrap {
  const cla = new Map(set.endpoints.map((e) => [e.clusterName, e]));
  const rc = new Map(set.routes.map((r) => [r.name, r]));
  const clusters: Cluster[] = set.clusters.map((c) => {
    const isEds = c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS;
    if (!isEds) return c;
    const edsName = c.edsClusterConfig?.serviceName || c.name;
    const assignment = cla.get(edsName) ?? create(ClusterLoadAssignmentSchema, { clusterName: c.name });
    return create(ClusterSchema, {
      ...c,
      clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
      edsClusterConfig: undefined,
      loadAssignment: { ...assignment, clusterName: c.name },
    });
  });
  const listeners: Listener[] = set.listeners.map((l0) => {
    const l = create(ListenerSchema, l0);
    forEachHcm(l, (any, replace) => {
      const hcm = unpackAs(HttpConnectionManagerSchema, any);
      if (hcm.routeSpecifier.case !== "rds") return;
      const routes = rc.get(hcm.routeSpecifier.value.routeConfigName);
      if (!routes) throw new Error(`listener ${l.name}: no RouteConfiguration "${hcm.routeSpecifier.value.routeConfigName}"`);
      hcm.routeSpecifier = { case: "routeConfig", value: routes };
      replace(anyPack(HttpConnectionManagerSchema, hcm));
    });
    return l;
  });
  if (opts.sdsMode === "envoy_grpc" && !clusters.some((c) => c.name === SDS_CLUSTER_NAME)) {
    clusters.push(
      create(ClusterSchema, {
        name: SDS_CLUSTER_NAME,
        clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
        connectTimeout: { seconds: 1n },
        typedExtensionProtocolOptions: {
          [HttpProtocolOptionsSchema.typeName]: anyPack(
            HttpProtocolOptionsSchema,
            create(HttpProtocolOptionsSchema, {
              upstreamProtocolOptions: { case: "explicitHttpConfig", value: { protocolConfig: { case: "http2ProtocolOptions", value: {} } } },
            }),
          ),
        },
        loadAssignment: {
          clusterName: SDS_CLUSTER_NAME,
          endpoints: [{ lbEndpoints: [{ hostIdentifier: { case: "endpoint", value: { address: { address: { case: "pipe", value: { path: opts.sdsSocketPath } } } } } }] }],
        },
      }),
    );
  }
  return create(BootstrapSchema, {
    node: nodeMessage(node),
    admin: { address: { address: { case: "socketAddress", value: { address: "127.0.0.1", portSpecifier: { case: "portValue", value: opts.adminPort } } } } },
    staticResources: { clusters, listeners },
  });
}

