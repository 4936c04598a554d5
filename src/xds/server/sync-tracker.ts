// What each node was sent and what it said back, per type: the data behind
// /debug/syncz and CSDS, and the server's metrics.
import { Counter, Gauge, Registry } from "prom-client";
import { shortTypeName } from "../resource/type-urls.js";

export interface NackRecord {
  version: string;
  nonce: string;
  message: string;
  at: string;
}

export interface TypeSyncStatus {
  typeUrl: string;
  type: string;
  versionSent: string;
  nonceSent: string;
  /** When versionSent was sent (ISO time; "" before the first response): how long a STALE type has waited. */
  sentAt: string;
  versionAcked: string;
  lastNack: NackRecord | null;
  /** Responses of this type sent to this node (over all its streams, since it connected). */
  responses: number;
  synced: boolean;
}

export interface NodeSyncStatus {
  nodeId: string;
  streams: number;
  protocol: "sotw" | "delta" | "mixed";
  types: TypeSyncStatus[];
}

export interface SyncTracker {
  streamOpened(nodeId: string, protocol: "sotw" | "delta"): void;
  streamClosed(nodeId: string): void;
  sent(nodeId: string, typeUrl: string, version: string, nonce: string, resources: number): void;
  acked(nodeId: string, typeUrl: string, version: string): void;
  nacked(nodeId: string, typeUrl: string, version: string, nonce: string, message: string): void;
  status(): NodeSyncStatus[];
  node(nodeId: string): NodeSyncStatus | undefined;
}

interface NodeEntry {
  streams: number;
  protocols: Set<"sotw" | "delta">;
  types: Map<string, { versionSent: string; nonceSent: string; sentAt: string; versionAcked: string; lastNack: NackRecord | null; responses: number }>;
}

export function createSyncTracker(registry: Registry = new Registry()): SyncTracker {
  const nodes = new Map<string, NodeEntry>();
  const metric = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const streams = metric("meshkey_xds_streams", () => new Gauge({ name: "meshkey_xds_streams", help: "Open ADS streams", labelNames: ["protocol"], registers: [registry] }));
  const pushes = metric("meshkey_xds_pushes_total", () => new Counter({ name: "meshkey_xds_pushes_total", help: "xDS responses sent", labelNames: ["type"], registers: [registry] }));
  const acks = metric("meshkey_xds_acks_total", () => new Counter({ name: "meshkey_xds_acks_total", help: "xDS ACKs received", labelNames: ["type"], registers: [registry] }));
  const nacks = metric("meshkey_xds_nacks_total", () => new Counter({ name: "meshkey_xds_nacks_total", help: "xDS NACKs received", labelNames: ["type"], registers: [registry] }));
  const label = (t: string) => shortTypeName[t] ?? t;
  // Every series exists from the start, at 0 (a rate() over a counter that appears later misses its first step).
  for (const type of Object.values(shortTypeName)) for (const c of [pushes, acks, nacks]) c.inc({ type }, 0);

  const typeOf = (nodeId: string, typeUrl: string) => {
    let n = nodes.get(nodeId);
    if (!n) nodes.set(nodeId, (n = { streams: 0, protocols: new Set(), types: new Map() }));
    let t = n.types.get(typeUrl);
    if (!t) n.types.set(typeUrl, (t = { versionSent: "", nonceSent: "", sentAt: "", versionAcked: "", lastNack: null, responses: 0 }));
    return t;
  };
  const view = (nodeId: string, n: NodeEntry): NodeSyncStatus => ({
    nodeId,
    streams: n.streams,
    protocol: n.protocols.size > 1 ? "mixed" : (n.protocols.values().next().value ?? "sotw"),
    types: [...n.types.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([typeUrl, t]) => ({ typeUrl, type: label(typeUrl), ...t, synced: t.versionSent !== "" && t.versionSent === t.versionAcked })),
  });

  return {
    streamOpened(nodeId, protocol) {
      let n = nodes.get(nodeId);
      if (!n) nodes.set(nodeId, (n = { streams: 0, protocols: new Set(), types: new Map() }));
      n.streams++;
      n.protocols.add(protocol);
      streams.inc({ protocol });
    },
    streamClosed(nodeId) {
      const n = nodes.get(nodeId);
      if (!n) return;
      streams.dec({ protocol: n.protocols.has("delta") && !n.protocols.has("sotw") ? "delta" : "sotw" });
      if (--n.streams <= 0) nodes.delete(nodeId);
    },
    sent(nodeId, typeUrl, version, nonce) {
      const t = typeOf(nodeId, typeUrl);
      t.versionSent = version;
      t.nonceSent = nonce;
      t.sentAt = new Date().toISOString();
      t.responses++;
      pushes.inc({ type: label(typeUrl) });
    },
    acked(nodeId, typeUrl, version) {
      typeOf(nodeId, typeUrl).versionAcked = version;
      acks.inc({ type: label(typeUrl) });
    },
    nacked(nodeId, typeUrl, version, nonce, message) {
      typeOf(nodeId, typeUrl).lastNack = { version, nonce, message, at: new Date().toISOString() };
      nacks.inc({ type: label(typeUrl) });
    },
    status: () => [...nodes.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, n]) => view(id, n)),
    node(nodeId) {
      const n = nodes.get(nodeId);
      return n ? view(nodeId, n) : undefined;
    },
  };
}
