// xDS type URLs and the ADS push order (make-before-break: CDS → EDS → LDS → RDS;
// removals go the other way, last).
import { SECRET_TYPE_URL } from "../../spiffe/index.js";

export const TypeUrl = {
  Cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  Endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  Listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  Route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  Secret: SECRET_TYPE_URL,
} as const;

export type KnownTypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/**
 * Types whose every SotW response is the whole state (a resource left out is removed):
 * listeners and clusters. Endpoints, routes and secrets are answered per resource, so a
 * SotW response of those types need only carry what the client does not hold yet (Envoy's
 * gRPC mux updates just the watches a response names; gRFC A53 for gRPC clients).
 */
export const FULL_STATE_TYPES: ReadonlySet<string> = new Set([TypeUrl.Listener, TypeUrl.Cluster]);

/** Order in which updates of several types are sent on one ADS stream. */
export const PUSH_ORDER: readonly string[] = [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route, TypeUrl.Secret];

/** Rank of a type in the push order (unknown types after the known ones). */
export function pushRank(typeUrl: string): number {
  const i = PUSH_ORDER.indexOf(typeUrl);
  return i < 0 ? PUSH_ORDER.length : i;
}

export const shortTypeName: Record<string, string> = {
  [TypeUrl.Cluster]: "CDS",
  [TypeUrl.Endpoint]: "EDS",
  [TypeUrl.Listener]: "LDS",
  [TypeUrl.Route]: "RDS",
  [TypeUrl.Secret]: "SDS",
};
