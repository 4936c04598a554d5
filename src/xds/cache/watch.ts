// The one interface between the protocol servers and the cache (go-control-plane's
// ConfigWatcher): a server asks for a type and gets pushed responses; it knows
// nothing of resource contents, the cache nothing of gRPC.
import type { CachedResource } from "./snapshot.js";

export interface WatchNode {
  id: string;
  cluster?: string;
  metadata?: Record<string, unknown>;
}

export interface WatchRequest {
  typeUrl: string;
  /** Names asked for; ignored when wildcard. */
  names: ReadonlySet<string>;
  wildcard: boolean;
  /** Version of the last response this stream sent for the type ("" if none). */
  knownVersion: string;
  /** Respond even when the version is known (the subscription changed). */
  force: boolean;
  /**
   * What the client holds (the state of the last response it ACKed), for a type that is not
   * full-state: the response then carries only the resources it lacks or has at another version.
   * Undefined: every asked resource is sent.
   */
  held?: HeldState;
}

export interface HeldState {
  /** The type's resources at the ACKed version (the cache's own map, shared, not a copy). */
  readonly resources: ReadonlyMap<string, CachedResource>;
  /** The names the client was subscribed to then; undefined for a wildcard subscription. */
  readonly names: ReadonlySet<string> | undefined;
}

export interface WatchResponse {
  typeUrl: string;
  version: string;
  resources: CachedResource[];
  /** The type's resources at `version` (the cache's map): what the client holds once it ACKs. */
  state: ReadonlyMap<string, CachedResource>;
  /**
   * `resources` is the state's own array, the same object for every stream sent this state:
   * worth encoding once for all (a per-stream array is encoded for its one response).
   */
  shared: boolean;
}

export interface DeltaWatchRequest {
  typeUrl: string;
  subscribed: ReadonlySet<string>;
  wildcard: boolean;
  /** Resource versions the client has (from initial_resource_versions and what was sent). */
  known: ReadonlyMap<string, string>;
}

export interface DeltaWatchResponse {
  typeUrl: string;
  systemVersion: string;
  updated: CachedResource[];
  removed: string[];
}

export type CancelWatch = () => void;

export interface ConfigWatcher {
  /** A stream for this node opened (the cache may build the node's snapshot now). */
  openNode(node: WatchNode): void;
  /** A stream for this node closed. */
  closeNode(nodeId: string): void;
  /** Responds now if the node's state differs from what the request knows, else on the next change. */
  createWatch(nodeId: string, request: WatchRequest, push: (response: WatchResponse) => void): CancelWatch;
  createDeltaWatch(nodeId: string, request: DeltaWatchRequest, push: (response: DeltaWatchResponse) => void): CancelWatch;
}
