import type { Cluster } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import type { ClusterLoadAssignment } from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import type { Listener } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import type { RouteConfiguration } from "../../../gen/envoy/config/route/v3/route_pb.js";

/** Everything one node is served, by xDS type; each list sorted by resource name. */
export interface ResourceSet {
  clusters: Cluster[];
  endpoints: ClusterLoadAssignment[];
  listeners: Listener[];
  routes: RouteConfiguration[];
}

export interface TranslateOptions {
  trustDomain: string;
  /** Path of the SDS Unix socket (target_uri `unix:<path>`). */
  sdsSocketPath: string;
  /** File with the workload's service-account token, sent by Envoy as istio_sds_credentials_header-bin. */
  tokenPath: string;
  /** google_grpc (the seeds' shape, default) or envoy_grpc to the bootstrap's static `sds-grpc` cluster. */
  sdsMode?: "google_grpc" | "envoy_grpc";
  /** Address sidecar outbound listeners bind (default 127.0.0.1). */
  outboundBindAddress?: string;
}

export function byName<T extends { name: string }>(items: T[]): T[] {
  return items.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
