// A translator ResourceSet → a cache Snapshot (each resource encoded once), and
// canonical protobuf JSON of a snapshot (for config_dump and `meshkey render`).
import { toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { ClusterSchema, type Cluster } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ClusterLoadAssignmentSchema, type ClusterLoadAssignment } from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { ListenerSchema, type Listener } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema, type RouteConfiguration } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { collectReferences, resourceTypeRegistry, servableSecret, type ResourceSet } from "../../mesh/index.js";
import { cacheResource, createSnapshot, type CachedResource, type ResourceRef, type Snapshot } from "../cache/snapshot.js";
import { PUSH_ORDER, TypeUrl } from "./type-urls.js";

const EMPTY: ResourceSet = { clusters: [], endpoints: [], listeners: [], routes: [] };

/** The EDS, RDS and cluster names one resource needs, as snapshot references (collected once, when it is packed). */
function refsOf(one: Partial<ResourceSet>): ResourceRef[] {
  const refs = collectReferences({ ...EMPTY, ...one });
  const unservable = [...refs.secrets].filter((s) => !servableSecret(s));
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

/** Recursively sorts object keys so that the output is stable. */
export function sortKeys(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const out: JsonObject = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as JsonObject)[k]!);
    return out;
  }
  return value;
}

/** { "<type url>": { version, resources: [canonical JSON, by name] } } in push order. */
export function snapshotToJson(snapshot: Snapshot): JsonObject {
  const out: JsonObject = {};
  const types = [...snapshot.types.keys()].sort((a, b) => PUSH_ORDER.indexOf(a) - PUSH_ORDER.indexOf(b));
  for (const typeUrl of types) {
    const t = snapshot.get(typeUrl)!;
    out[typeUrl] = {
      version: t.version,
      resources: [...t.resources.values()].map((r) => sortKeys(toJson(AnySchema, r.any, { registry: resourceTypeRegistry }))),
    };
  }
  return out;
}
