// Mesh model → per-node snapshots, computed once per view instead of once per node.
// What does not depend on the node is translated and packed once per mesh version and
// shared, as the same CachedResource objects (and Any bytes), by every node of its view:
// - EDS: one load assignment per service port, the same for every sidecar;
// - outbound clusters: keyed by what they depend on (trust domain, SDS mode, socket and
//   token path of the node: the SDS config source names them), and the mesh;
// - outbound routes: per port, keyed by the node's namespace (short-name domains).
// Per node, only its own part is built: inbound listeners and clusters and the
// outbound listeners bound to its pod IP (their routes come through RDS).
// A new mesh version reuses every packed resource whose inputs did not change, so a
// change retranslates only what it touches; versions stay the content hashes that
// createSnapshot gives (so replicas and `meshkey render` agree).
import {
  checkConsistency,
  clusterViewKey,
  httpServicesByPort,
  listenerAddress,
  mtlsModeOf,
  nodeKind,
  outboundRoute,
  serviceLoadAssignments,
  serviceOutboundClusters,
  sidecarIdentity,
  sidecarOptions,
  sidecarOwnResources,
  translateProxyless,
  workloadServices,
  type MeshModel,
  type MeshService,
  type NodeInfo,
  type TranslateOptions,
} from "../mesh/index.js";
import type { Listener } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { snapshotConsistency } from "./cache/consistency.js";
import { mergeTypeSnapshots, snapshotOfTypes, typeSnapshot, type CachedResource, type Snapshot, type SortedTypeSnapshot, type TypeSnapshot } from "./cache/snapshot.js";
import { packCluster, packListener, packLoadAssignment, packRoute, snapshotFromResources } from "./resource/resource-snapshot.js";
import { TypeUrl } from "./resource/type-urls.js";

export class TranslationError extends Error {
  override name = "TranslationError";
}

/** The translation of one mesh version: snapshots for nodes, built on first ask and shared. */
export interface MeshTranslation {
  readonly mesh: MeshModel;
  /** The node's snapshot (consistent), or throws TranslationError naming the node. */
  snapshotFor(node: NodeInfo): Snapshot;
  /** Drops what only nodes outside `live` used (short-lived nodes leave nothing behind). */
  retain(live: Iterable<NodeInfo>): void;
  /** Entries held (for tests): shared views and node parts. */
  size(): { views: number; nodes: number };
}

export interface TranslationCache {
  /** The translation of `mesh`, reusing the packed resources of the committed one where inputs are unchanged. */
  translate(mesh: MeshModel): MeshTranslation;
  /** Makes `t` the base that later translations reuse from (after it was published). */
  commit(t: MeshTranslation): void;
  current(): MeshTranslation | undefined;
}

/** Content-keyed packed resources of one version; the next version copies over what it reuses. */
interface Memo {
  eds: Map<string, CachedResource[]>;
  clusters: Map<string, CachedResource[]>;
  routes: Map<string, CachedResource>;
  own: Map<string, OwnPart>;
}

interface OwnPart {
  listeners: SortedTypeSnapshot;
  clusters: SortedTypeSnapshot;
}

const newMemo = (): Memo => ({ eds: new Map(), clusters: new Map(), routes: new Map(), own: new Map() });

/** Looks `key` up in this version's memo, then the previous one's (carried over), else makes it. */
function memoized<V>(now: Map<string, V>, before: Map<string, V> | undefined, key: string, make: () => V): V {
  let v = now.get(key);
  if (v !== undefined) return v;
  v = before?.get(key) ?? make();
  now.set(key, v);
  return v;
}

const withoutEndpoints = (svc: MeshService) => JSON.stringify([svc.name, svc.namespace, svc.serviceAccount, svc.host, svc.ports]);

export function createTranslationCache(options: TranslateOptions): TranslationCache {
  let committed: { t: MeshTranslation; memo: Memo } | undefined;
  const memos = new WeakMap<MeshTranslation, Memo>();

  const translate = (mesh: MeshModel): MeshTranslation => {
    const before = committed?.memo;
    const memo = newMemo();
    const fail = (node: NodeInfo, problems: string[]): never => {
      throw new TranslationError(`node ${node.id}: ${problems.join("; ")}`);
    };

    // Per version: the shared views, built on first use.
    let eds: SortedTypeSnapshot | undefined;
    const clusterViews = new Map<string, SortedTypeSnapshot>();
    const routeViews = new Map<string, SortedTypeSnapshot>();
    const checkedPairs = new Set<string>();
    const snapshots = new Map<string, Snapshot>();
    /** The own part (by content key) each node snapshot uses. */
    const ownKeyOf = new Map<string, string>();
    let byPort: Map<number, MeshService[]> | undefined;
    let outboundShape: string | undefined;

    const edsView = (): SortedTypeSnapshot =>
      (eds ??= typeSnapshot(mesh.services.flatMap((svc) => memoized(memo.eds, before?.eds, JSON.stringify(svc), () => serviceLoadAssignments(svc).map(packLoadAssignment)))));

    const clusterView = (opts: TranslateOptions, node: NodeInfo): SortedTypeSnapshot => {
      const key = clusterViewKey(opts);
      let view = clusterViews.get(key);
      if (view) return view;
      view = typeSnapshot(
        mesh.services.flatMap((svc) =>
          memoized(memo.clusters, before?.clusters, `${key}|${mtlsModeOf(mesh, svc.namespace)}|${withoutEndpoints(svc)}`, () => {
            try {
              return serviceOutboundClusters(mesh, svc, opts).map(packCluster);
            } catch (err) {
              return fail(node, [(err as Error).message]);
            }
          }),
        ),
      );
      // Once per view: every EDS name the shared clusters need is in the shared EDS.
      const endpoints = edsView();
      const problems: string[] = [];
      for (const r of view.resources.values()) {
        for (const ref of r.references) {
          if (ref.typeUrl === TypeUrl.Endpoint && !endpoints.resources.has(ref.name)) problems.push(`Cluster "${r.name}" refers to missing ClusterLoadAssignment "${ref.name}"`);
        }
      }
      if (problems.length > 0) fail(node, problems);
      clusterViews.set(key, view);
      return view;
    };

    const routeView = (namespace: string): SortedTypeSnapshot => {
      let view = routeViews.get(namespace);
      if (view) return view;
      byPort ??= httpServicesByPort(mesh);
      const routes: CachedResource[] = [];
      for (const [port, services] of byPort) {
        // A route depends on the port's services' names and on whether the node shares their namespace.
        const key = JSON.stringify([port, services.map((s) => [s.host, s.name, s.namespace, s.namespace === namespace])]);
        routes.push(memoized(memo.routes, before?.routes, key, () => packRoute(outboundRoute(port, services, namespace))));
      }
      view = typeSnapshot(routes);
      routeViews.set(namespace, view);
      return view;
    };

    /** The outbound listeners' inputs: the HTTP ports and, per TCP-only port, its service. */
    const outboundListenerShape = (): string => {
      if (outboundShape !== undefined) return outboundShape;
      const http = new Set<number>();
      const tcp = new Map<number, string>();
      for (const svc of mesh.services) {
        for (const p of svc.ports) {
          if (p.protocol === "TCP") {
            if (!tcp.has(p.port)) tcp.set(p.port, svc.host);
          } else http.add(p.port);
        }
      }
      return (outboundShape = JSON.stringify([[...http], [...tcp]]));
    };

    const sidecarSnapshot = (node: NodeInfo, snapshotKey: string): Snapshot => {
      const id = sidecarIdentity(node);
      const opts = sidecarOptions(id, options);
      const ownKey = JSON.stringify([id, clusterViewKey(opts), opts.outboundBindAddress ?? "", mtlsModeOf(mesh, id.namespace), workloadServices(mesh, id), outboundListenerShape()]);
      const own = memoized(memo.own, before?.own, ownKey, () => {
        const r = sidecarOwnResources(mesh, id, opts);
        const binds = duplicateBinds(r.listeners);
        if (binds.length > 0) fail(node, binds);
        try {
          return { listeners: typeSnapshot(r.listeners.map(packListener)), clusters: typeSnapshot(r.clusters.map(packCluster)) };
        } catch (err) {
          return fail(node, [(err as Error).message]);
        }
      });
      ownKeyOf.set(snapshotKey, ownKey);
      const clusters = clusterView(opts, node);
      const routes = routeView(id.namespace);
      const endpoints = edsView();
      // Once per (route view, cluster view): the routes' clusters exist.
      const pair = `${id.namespace}\0${clusterViewKey(opts)}`;
      if (!checkedPairs.has(pair)) {
        const problems: string[] = [];
        for (const r of routes.resources.values()) {
          for (const ref of r.references) if (ref.typeUrl === TypeUrl.Cluster && !clusters.resources.has(ref.name)) problems.push(`RouteConfiguration "${r.name}" refers to missing Cluster "${ref.name}"`);
        }
        if (problems.length > 0) fail(node, problems);
        checkedPairs.add(pair);
      }
      let merged: TypeSnapshot;
      try {
        merged = mergeTypeSnapshots(clusters, own.clusters);
      } catch (err) {
        return fail(node, [(err as Error).message]);
      }
      // The node's own part: what it refers to is in its snapshot; no two listeners bind one address.
      const has: Record<string, (name: string) => boolean> = {
        [TypeUrl.Cluster]: (n) => merged.resources.has(n),
        [TypeUrl.Endpoint]: (n) => endpoints.resources.has(n),
        [TypeUrl.Route]: (n) => routes.resources.has(n),
      };
      const problems: string[] = [];
      for (const r of [...own.listeners.resources.values(), ...own.clusters.resources.values()]) {
        for (const ref of r.references) {
          if (!(has[ref.typeUrl]?.(ref.name) ?? false)) problems.push(`${r.typeUrl.split(".").pop()} "${r.name}" refers to missing ${ref.typeUrl.split(".").pop()} "${ref.name}"`);
        }
      }
      if (problems.length > 0) fail(node, problems);
      return snapshotOfTypes(
        new Map<string, TypeSnapshot>([
          [TypeUrl.Cluster, merged],
          [TypeUrl.Endpoint, endpoints],
          [TypeUrl.Listener, own.listeners],
          [TypeUrl.Route, routes],
        ]),
      );
    };

    const proxylessSnapshot = (node: NodeInfo): Snapshot => {
      const set = translateProxyless(mesh);
      const problems = checkConsistency(set);
      if (problems.length > 0) fail(node, problems);
      const snap = snapshotFromResources(set);
      const dangling = snapshotConsistency(snap);
      if (dangling.length > 0) fail(node, dangling);
      return snap;
    };

    const keyOf = (node: NodeInfo) => (nodeKind(node) === "proxyless" ? "proxyless" : `sidecar:${JSON.stringify(sidecarIdentity(node))}`);

    const t: MeshTranslation = {
      mesh,
      snapshotFor(node) {
        const key = keyOf(node);
        let snap = snapshots.get(key);
        if (!snap) {
          snap = key === "proxyless" ? proxylessSnapshot(node) : sidecarSnapshot(node, key);
          snapshots.set(key, snap);
        }
        return snap;
      },
      retain(live) {
        const keep = new Set<string>();
        for (const n of live) keep.add(keyOf(n));
        for (const k of [...snapshots.keys()]) {
          if (!keep.has(k)) {
            snapshots.delete(k);
            ownKeyOf.delete(k);
          }
        }
        const used = new Set(ownKeyOf.values());
        for (const k of [...memo.own.keys()]) if (!used.has(k)) memo.own.delete(k);
      },
      size: () => ({ views: clusterViews.size + routeViews.size + (eds ? 1 : 0), nodes: memo.own.size }),
    };
    memos.set(t, memo);
    return t;
  };

  return {
    translate,
    commit(t) {
      const memo = memos.get(t);
      if (memo) committed = { t, memo };
    },
    current: () => committed?.t,
  };
}

/** Listeners of one node that bind the same address. */
function duplicateBinds(listeners: readonly Listener[]): string[] {
  const bound = new Map<string, string>();
  const problems: string[] = [];
  for (const l of listeners) {
    const address = listenerAddress(l);
    if (address === "") continue;
    const other = bound.get(address);
    if (other !== undefined) problems.push(`listeners "${other}" and "${l.name}" both bind ${address}`);
    bound.set(address, l.name);
  }
  return problems;
}
