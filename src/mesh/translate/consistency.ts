// Before a snapshot is published: every RDS / EDS / SDS name a resource refers to
// exists in the set or is a name the SDS agent serves (src/spiffe's servedSecretKind).
import { isMessage, type Message } from "@bufbuild/protobuf";
import { anyUnpack, AnySchema } from "@bufbuild/protobuf/wkt";
import type { SdsSecretConfig } from "../../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { servedSecretKind } from "../../spiffe/index.js";
import type { ResourceSet } from "./resource-set.js";
import { resourceTypeRegistry } from "./type-registry.js";
import { listenerAddress } from "./sidecar.js";

export interface References {
  routes: Set<string>;
  clusters: Set<string>;
  edsClusters: Set<string>;
  secrets: Set<string>;
  sdsConfigs: SdsSecretConfig[];
}

/** Walks every message of the set, unpacking Anys, and collects what it refers to. */
export function collectReferences(set: ResourceSet): References {
  const refs: References = { routes: new Set(), clusters: new Set(), edsClusters: new Set(), secrets: new Set(), sdsConfigs: [] };
  const visit = (value: unknown): void => {
    if (value === null || typeof value !== "object" || value instanceof Uint8Array) return;
    if (Array.isArray(value)) {
      for (const v of value) visit(v);
      return;
    }
    if (isMessage(value, AnySchema)) {
      const inner = anyUnpack(value, resourceTypeRegistry);
      if (inner === undefined) throw new Error(`unknown Any type ${value.typeUrl}`);
      visit(inner);
      return;
    }
    const typeName = (value as Partial<Message>).$typeName;
    switch (typeName) {
      case "envoy.extensions.filters.network.http_connection_manager.v3.Rds":
        refs.routes.add((value as { routeConfigName: string }).routeConfigName);
        break;
      case "envoy.config.route.v3.RouteAction":
      case "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": {
        const spec = (value as { clusterSpecifier: { case?: string; value?: unknown } }).clusterSpecifier;
        if (spec.case === "cluster") refs.clusters.add(spec.value as string);
        break;
      }
      case "envoy.config.cluster.v3.Cluster": {
        const c = value as { name: string; clusterDiscoveryType: { case?: string; value?: unknown }; edsClusterConfig?: { serviceName: string } };
        if (c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === 3) {
          refs.edsClusters.add(c.edsClusterConfig?.serviceName || c.name);
        }
        break;
      }
      case "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig":
        refs.secrets.add((value as SdsSecretConfig).name);
        refs.sdsConfigs.push(value as SdsSecretConfig);
        break;
    }
    for (const v of Object.values(value)) visit(v);
  };
  for (const list of [set.clusters, set.endpoints, set.listeners, set.routes]) visit(list);
  return refs;
}

/**
 * Problems found (empty when the set is consistent). Resources are shared by nodes,
 * so an SDS name must be one the agent serves to every workload (`default`, `ROOTCA`).
 */
export function checkConsistency(set: ResourceSet): string[] {
  const refs = collectReferences(set);
  const problems: string[] = [];
  const routes = new Set(set.routes.map((r) => r.name));
  const clusters = new Set(set.clusters.map((c) => c.name));
  const assignments = new Set(set.endpoints.map((e) => e.clusterName));
  for (const r of refs.routes) if (!routes.has(r)) problems.push(`RDS route configuration "${r}" is referenced but missing`);
  for (const c of refs.clusters) if (!clusters.has(c)) problems.push(`cluster "${c}" is referenced but missing`);
  for (const c of refs.edsClusters) if (!assignments.has(c)) problems.push(`EDS load assignment "${c}" is referenced but missing`);
  for (const s of refs.secrets) if (servedSecretKind(s) === undefined) problems.push(`SDS secret "${s}" cannot be served`);
  const bound = new Map<string, string>();
  for (const l of set.listeners) {
    const a = listenerAddress(l);
    if (a === "") continue;
    const other = bound.get(a);
    if (other !== undefined) problems.push(`listeners "${other}" and "${l.name}" both bind ${a}`);
    bound.set(a, l.name);
  }
  return problems;
}
