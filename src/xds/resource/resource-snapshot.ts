// A translator ResourceSet → a cache Snapshot (each resource encoded once).
import { ClusterSchema, type Cluster } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ClusterLoadAssignmentSchema, type ClusterLoadAssignment } from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema, type Listener } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema, type RouteConfiguration } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { collectReferences, type ResourceSet } from "../../mesh/index.js";
import { servedSecretKind } from "../../spiffe/index.js";
import { cacheResource, createSnapshot, type CachedResource, type ResourceRef, type Snapshot } from "../cache/snapshot.js";
import { TypeUrl } from "./type-urls.js";

const EMPTY: ResourceSet = { clusters: [], endpoints: [], listeners: [], routes: [] };

/**
 * The EDS, RDS and cluster names one resource needs, as snapshot references (collected once, when it is packed).
 * A packed resource may be shared by every node, so its SDS names must be served to every workload.
 */
function refsOf(one: Partial<ResourceSet>): ResourceRef[] {
  const refs = collectReferences({ ...EMPTY, ...one });
  const unservable = [...refs.secrets].filter((s) => servedSecretKind(s) === undefined);
  if (unservable.length > 0) throw new Error(`SDS secret "${unservable[0]}" cannot be served`);
  return [
    ...[...refs.edsClusters].map((name) => ({ typeUrl: TypeUrl.Endpoint, name })),
    ...[...refs.routes].map((name) => ({ typeUrl: TypeUrl.Route, name })),
    ...[...refs.clusters].map((name) => ({ typeUrl: TypeUrl.Cluster, name })),
  ];
}

/** Packs one resource of each kind, with its references. */
export const packCluster = (c: Cluster): CachedResource => cacheResource(ClusterSchema, c.name, c, refsOf({ clusters: [c] }));
export const packLoadAssignment = (e: ClusterLoadAssignment): CachedResource => cacheResource(ClusterLoadAssignmentSchema, e.clusterName, e);
export const packListener = (l: Listener): CachedResource => cacheResource(ListenerSchema, l.name, l, refsOf({ listeners: [l] }));
export const packRoute = (r: RouteConfiguration): CachedResource => cacheResource(RouteConfigurationSchema, r.name, r, refsOf({ routes: [r] }));

/**
 * Resources already packed, by type, name and version: snapshots of different
 * nodes that contain the same resource share one packed copy (and one Any).
 */
export type ResourceIntern = Map<string, CachedResource>;

export function snapshotFromResources(set: ResourceSet, intern?: ResourceIntern): Snapshot {
  const share = (r: CachedResource): CachedResource => {
    if (!intern) return r;
    const key = `${r.typeUrl}|${r.name}|${r.version}`;
    const known = intern.get(key);
    if (known) return known;
    intern.set(key, r);
    return r;
  };
  return createSnapshot(
    [
      ...set.clusters.map((c) => share(packCluster(c))),
      ...set.endpoints.map((e) => share(packLoadAssignment(e))),
      ...set.listeners.map((l) => share(packListener(l))),
      ...set.routes.map((r) => share(packRoute(r))),
    ],
    [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route],
  );
}
