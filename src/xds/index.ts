// ADS control plane: a snapshot cache (no gRPC), SotW + delta ADS and CSDS servers
// (no resource contents), and the mesh controller that joins them to src/mesh.
export { createSnapshotCache, type SnapshotCache, type SnapshotCacheOptions } from "./cache/snapshot-cache.js";
export { createSnapshot, cacheResource, type Snapshot, type TypeSnapshot, type CachedResource, type ResourceRef } from "./cache/snapshot.js";
export { snapshotConsistency } from "./cache/consistency.js";
export type {
  ConfigWatcher,
  WatchNode,
  WatchRequest,
  WatchResponse,
  DeltaWatchRequest,
  DeltaWatchResponse,
  CancelWatch,
} from "./cache/watch.js";
export { TypeUrl, type KnownTypeUrl } from "./resource/type-urls.js";
export { snapshotFromResources } from "./resource/resource-snapshot.js";
export { startXdsServer, type XdsServerOptions, type RunningXdsServer } from "./xds-server.js";
export { checkNodeIdentity, type PeerIdentityOf } from "./server/node-identity.js";
export { createSyncTracker, type SyncTracker, type NodeSyncStatus, type TypeSyncStatus, type NackRecord } from "./server/sync-tracker.js";
export { createMeshController, type MeshController, type MeshControllerOptions, type MeshHistory } from "./mesh-controller.js";
export { renderMesh, renderNodes, RENDER_FORMATS, type RenderedNode, type RenderFormat, type RenderOptions } from "./render-mesh.js";
