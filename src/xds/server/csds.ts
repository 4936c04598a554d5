// CSDS (envoy.service.status.v3.ClientStatusDiscoveryService): for each connected
// node, every resource of its snapshot with the status the node reported for it.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ClientResourceStatus } from "../../../gen/envoy/admin/v3/config_dump_shared_pb.js";
import {
  ClientStatusResponseSchema,
  ConfigStatus,
  type ClientConfig_GenericXdsConfigSchema,
  type ClientStatusRequest,
  type ClientStatusResponse,
} from "../../../gen/envoy/service/status/v3/csds_pb.js";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import type { SnapshotCache } from "../cache/snapshot-cache.js";
import type { SyncTracker, TypeSyncStatus } from "./sync-tracker.js";

function statusOf(t: TypeSyncStatus | undefined, currentVersion: string): [ConfigStatus, ClientResourceStatus] {
  if (!t || t.versionSent === "") return [ConfigStatus.NOT_SENT, ClientResourceStatus.REQUESTED];
  if (t.lastNack && t.lastNack.version === t.versionSent) return [ConfigStatus.ERROR, ClientResourceStatus.NACKED];
  if (t.versionAcked === t.versionSent && t.versionSent === currentVersion) return [ConfigStatus.SYNCED, ClientResourceStatus.ACKED];
  return [ConfigStatus.STALE, ClientResourceStatus.REQUESTED];
}

/**
 * A NACK stops being the node's error state once a later version is ACKed (as Envoy's
 * own error_state clears on the next good update); /debug/syncz keeps it as history.
 */
const recovered = (t: TypeSyncStatus) => t.versionAcked !== "" && t.versionAcked === t.versionSent && t.lastNack?.version !== t.versionSent;

export function clientStatus(cache: SnapshotCache, tracker: SyncTracker, req: ClientStatusRequest): ClientStatusResponse {
  const wanted = req.node?.id;
  // What each connected node said about itself (its metadata names its kind: GENERATOR=grpc is proxyless).
  const connected = new Map(cache.connectedNodes().map((n) => [n.id, n]));
  const config = tracker
    .status()
    .filter((n) => !wanted || n.nodeId === wanted)
    .map((n) => {
      const snapshot = cache.getSnapshot(n.nodeId);
      const generic: MessageInitShape<typeof ClientConfig_GenericXdsConfigSchema>[] = [];
      for (const [typeUrl, ts] of snapshot?.types ?? []) {
        const t = n.types.find((x) => x.typeUrl === typeUrl);
        const [configStatus, clientStatus] = statusOf(t, ts.version);
        for (const r of ts.resources.values()) {
          generic.push({
            typeUrl,
            name: r.name,
            versionInfo: t?.versionSent || ts.version,
            xdsConfig: r.any,
            configStatus,
            clientStatus,
            ...(t?.sentAt ? { lastUpdated: timestampFromDate(new Date(t.sentAt)) } : {}),
            ...(t?.lastNack && !recovered(t) ? { errorState: { details: t.lastNack.message, versionInfo: t.lastNack.version, lastUpdateAttempt: timestampFromDate(new Date(t.lastNack.at)) } } : {}),
          });
        }
      }
      const node = connected.get(n.nodeId);
      return { node: { id: n.nodeId, cluster: node?.cluster ?? "", ...(node?.metadata ? { metadata: node.metadata as JsonObject } : {}) }, genericXdsConfigs: generic };
    });
  return create(ClientStatusResponseSchema, { config });
}
