// Proxyless gRPC (node metadata GENERATOR: grpc): per service port an API listener
// `<host>:<port>` (RDS over ADS), its route configuration, an EDS cluster and the
// load assignment with localities and weights. No SDS references: gRPC rejects them.
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { ClusterSchema, Cluster_DiscoveryType, Cluster_LbPolicy } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ListenerSchema } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { HttpConnectionManagerSchema } from "../../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import type { MeshModel } from "../model.js";
import { adsConfigSource } from "./config-sources.js";
import { loadAssignment } from "./endpoints.js";
import { rdsConnectionManager } from "./filters.js";
import { outboundClusterName, proxylessName } from "./names.js";
import { byName, type ResourceSet } from "./resource-set.js";

export function translateProxyless(mesh: MeshModel): ResourceSet {
  const set: ResourceSet = { clusters: [], endpoints: [], listeners: [], routes: [] };
  for (const svc of mesh.services) {
    for (const port of svc.ports) {
      if (port.protocol === "TCP") continue;
      const name = proxylessName(svc, port);
      const clusterName = outboundClusterName(port.port, svc.host);
      set.listeners.push(
        create(ListenerSchema, {
          name,
          apiListener: { apiListener: anyPack(HttpConnectionManagerSchema, rdsConnectionManager(name, name)) },
        }),
      );
      set.routes.push(
        create(RouteConfigurationSchema, {
          name,
          virtualHosts: [
            {
              name,
              domains: [name, svc.host],
              routes: [
                {
                  match: { pathSpecifier: { case: "prefix" as const, value: "" } },
                  action: { case: "route" as const, value: { clusterSpecifier: { case: "cluster" as const, value: clusterName } } },
                },
              ],
            },
          ],
        }),
      );
      const cluster = create(ClusterSchema, {
        name: clusterName,
        clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.EDS },
        lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
        edsClusterConfig: {},
      });
      cluster.edsClusterConfig!.edsConfig = adsConfigSource;
      set.clusters.push(cluster);
      set.endpoints.push(loadAssignment(clusterName, svc, port));
    }
  }
  byName(set.clusters);
  byName(set.listeners);
  byName(set.routes);
  set.endpoints.sort((a, b) => (a.clusterName < b.clusterName ? -1 : 1));
  return set;
}
