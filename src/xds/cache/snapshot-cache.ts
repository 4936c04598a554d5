// Per-node snapshots and the watches waiting on them. Knows nothing of gRPC.
import type { CachedResource, Snapshot } from "./snapshot.js";
import type {
  CancelWatch,
  ConfigWatcher,
  DeltaWatchRequest,
  DeltaWatchResponse,
  WatchNode,
  WatchRequest,
  WatchResponse,
} from "./watch.js";

export interface SnapshotCacheOptions {
  /**
   * Called when a stream opens for a node without a snapshot; may call setSnapshot
   * synchronously (the mesh controller translates the mesh for the node here).
   */
  resolveNode?: (node: WatchNode) => void;
}

export interface SnapshotCache extends ConfigWatcher {
  setSnapshot(nodeId: string, snapshot: Snapshot): void;
  getSnapshot(nodeId: string): Snapshot | undefined;
  clearSnapshot(nodeId: string): void;
  /**
   * Nodes with at least one open stream, with what they said about themselves: the one
   * node registry (the mesh controller translates for exactly these).
   */
  connectedNodes(): WatchNode[];
  /** What a connected node said about itself (undefined once its last stream closed). */
  connectedNode(nodeId: string): WatchNode | undefined;
  /** Ids of the nodes that have a snapshot. */
  nodeIds(): string[];
  setNodeResolver(resolve: ((node: WatchNode) => void) | undefined): void;
  /** Number of watches waiting (for tests and metrics). */
  watchCount(): number;
}

interface SotwWatch {
  kind: "sotw";
  request: WatchRequest;
  push: (r: WatchResponse) => void;
}
interface DeltaWatch {
  kind: "delta";
  request: DeltaWatchRequest;
  push: (r: DeltaWatchResponse) => void;
}
type Watch = SotwWatch | DeltaWatch;

const NO_RESOURCES: ReadonlyMap<string, CachedResource> = new Map();
/** A type snapshot's resources as an array, built once per snapshot and shared by every wildcard stream. */
const valuesOf = new WeakMap<ReadonlyMap<string, CachedResource>, CachedResource[]>();
function allOf(resources: ReadonlyMap<string, CachedResource>): CachedResource[] {
  let all = valuesOf.get(resources);
  if (!all) valuesOf.set(resources, (all = [...resources.values()]));
  return all;
}

/** Whether `names` is exactly every resource of the state (Envoy asks for every cluster's EDS). */
function namesAll(names: ReadonlySet<string>, state: ReadonlyMap<string, CachedResource>): boolean {
  if (names.size !== state.size) return false;
  for (const n of names) if (!state.has(n)) return false;
  return true;
}

function sotwResponse(snapshot: Snapshot, req: WatchRequest): WatchResponse | undefined {
  // A type the snapshot has nothing of is an empty state with its own version.
  const t = snapshot.get(req.typeUrl);
  const version = t?.version ?? "empty";
  if (version === req.knownVersion && !req.force) return undefined;
  const state = t?.resources ?? NO_RESOURCES;
  const everything = req.wildcard || namesAll(req.names, state);
  const wanted = everything
    ? allOf(state)
    : [...req.names].sort().flatMap((n) => {
        const r = state.get(n);
        return r ? [r] : [];
      });
  const held = req.held;
  // Per-resource type: only what the client lacks (new to its subscription, or another version).
  const lacking = held
    ? wanted.filter((r) => (held.names !== undefined && !held.names.has(r.name)) || held.resources.get(r.name)?.version !== r.version)
    : wanted;
  const resources = lacking.length === wanted.length ? wanted : lacking;
  // A subscription change that brings nothing new, at a version the client has: nothing to say.
  if (held && resources.length === 0 && version === req.knownVersion) return undefined;
  return { typeUrl: req.typeUrl, version, resources, state, shared: everything && resources === wanted };
}

function deltaResponse(snapshot: Snapshot, req: DeltaWatchRequest): DeltaWatchResponse | undefined {
  const t = snapshot.get(req.typeUrl);
  const resources = t?.resources ?? new Map<string, CachedResource>();
  const updated: CachedResource[] = [];
  const removed: string[] = [];
  const wanted = req.wildcard ? [...resources.keys(), ...[...req.subscribed].filter((n) => !resources.has(n))] : [...req.subscribed];
  for (const name of wanted) {
    const r = resources.get(name);
    if (r) {
      if (req.known.get(name) !== r.version) updated.push(r);
    } else if (req.known.has(name)) removed.push(name);
  }
  // A wildcard client is told about every resource it has that no longer exists.
  if (req.wildcard) for (const name of req.known.keys()) if (!resources.has(name) && !removed.includes(name) && !req.subscribed.has(name)) removed.push(name);
  if (updated.length === 0 && removed.length === 0) return undefined;
  updated.sort((a, b) => (a.name < b.name ? -1 : 1));
  removed.sort();
  return { typeUrl: req.typeUrl, systemVersion: t?.version ?? "empty", updated, removed };
}

export function createSnapshotCache(options: SnapshotCacheOptions = {}): SnapshotCache {
  const snapshots = new Map<string, Snapshot>();
  const watches = new Map<string, Set<Watch>>();
  const nodes = new Map<string, { node: WatchNode; streams: number }>();
  let resolveNode = options.resolveNode;
  // Snapshots made on demand for a connecting node go away with its last stream.
  const onDemand = new Set<string>();

  const respond = (w: Watch, snapshot: Snapshot): boolean => {
    if (w.kind === "sotw") {
      const r = sotwResponse(snapshot, w.request);
      if (r) w.push(r);
      return r !== undefined;
    }
    const r = deltaResponse(snapshot, w.request);
    if (r) w.push(r);
    return r !== undefined;
  };

  const addWatch = (nodeId: string, w: Watch): CancelWatch => {
    const snapshot = snapshots.get(nodeId);
    if (snapshot && respond(w, snapshot)) return () => {};
    let set = watches.get(nodeId);
    if (!set) watches.set(nodeId, (set = new Set()));
    set.add(w);
    return () => {
      const s = watches.get(nodeId);
      if (!s) return;
      s.delete(w);
      if (s.size === 0) watches.delete(nodeId);
    };
  };

  return {
    openNode(node) {
      const entry = nodes.get(node.id);
      if (entry) {
        entry.streams++;
        entry.node = node;
      } else nodes.set(node.id, { node, streams: 1 });
      if (!snapshots.has(node.id) && resolveNode) {
        resolveNode(node);
        if (snapshots.has(node.id)) onDemand.add(node.id);
      }
    },
    closeNode(nodeId) {
      const entry = nodes.get(nodeId);
      if (!entry) return;
      if (--entry.streams <= 0) {
        nodes.delete(nodeId);
        if (onDemand.delete(nodeId)) snapshots.delete(nodeId);
      }
    },
    createWatch: (nodeId, request, push) => addWatch(nodeId, { kind: "sotw", request, push }),
    createDeltaWatch: (nodeId, request, push) => addWatch(nodeId, { kind: "delta", request, push }),
    setSnapshot(nodeId, snapshot) {
      snapshots.set(nodeId, snapshot);
      const set = watches.get(nodeId);
      if (!set) return;
      for (const w of [...set]) {
        if (respond(w, snapshot)) set.delete(w);
      }
      if (set.size === 0) watches.delete(nodeId);
    },
    getSnapshot: (nodeId) => snapshots.get(nodeId),
    clearSnapshot(nodeId) {
      snapshots.delete(nodeId);
      onDemand.delete(nodeId);
    },
    connectedNodes: () => [...nodes.values()].map((e) => e.node),
    connectedNode: (nodeId) => nodes.get(nodeId)?.node,
    nodeIds: () => [...snapshots.keys()],
    setNodeResolver(resolve) {
      resolveNode = resolve;
    },
    watchCount: () => [...watches.values()].reduce((n, s) => n + s.size, 0),
  };
}
