// Sync state per connected proxy and type, from meshkey's CSDS answer (CDS, LDS,
// EDS, RDS) and /debug/sds (the node's identity): what `meshkey proxy-status` prints.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ClientConfig, ClientStatusResponse } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { ConfigStatus } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { nodeKind, sidecarIdentity, type NodeKind } from "../mesh/index.js";
import { spiffeIdOf } from "../spiffe/index.js";
import { TypeUrl } from "../xds/index.js";

export const ADS_TYPES = [
  { short: "CDS", typeUrl: TypeUrl.Cluster },
  { short: "LDS", typeUrl: TypeUrl.Listener },
  { short: "EDS", typeUrl: TypeUrl.Endpoint },
  { short: "RDS", typeUrl: TypeUrl.Route },
] as const;

export type SyncState = "SYNCED" | "STALE" | "NACKED" | "NOT SENT" | "-";

export interface TypeSync {
  type: string;
  state: SyncState;
  /** The version meshkey sent last. */
  version: string;
  resources: string[];
  /** STALE: since when the version waits for its ACK. */
  sentAt?: Date;
  /** NACKED: Envoy's message and the version it refused. */
  nack?: { message: string; version: string; at?: Date };
}

export interface ProxySync {
  nodeId: string;
  kind: NodeKind;
  /** The SPIFFE ID the node's metadata / id names (sidecars). */
  spiffeId: string | undefined;
  types: TypeSync[];
}

/** The subset of /debug/sds this reads. */
export interface SdsDebugJson {
  trustDomain: string;
  identities: Array<{
    spiffeId: string;
    serialHex?: string;
    notBefore?: string;
    notAfter?: string;
    streams: number;
    lastError?: { kind: string; message: string; at: string };
    lastNack?: { names: string[]; message: string; at: string };
  }>;
}

function metadataOf(c: ClientConfig): Record<string, unknown> {
  return (c.node?.metadata ?? {}) as Record<string, unknown>;
}

export function proxyKind(c: ClientConfig): NodeKind {
  return nodeKind({ id: c.node?.id ?? "", metadata: metadataOf(c) });
}

export function nodeSpiffeId(c: ClientConfig, trustDomain: string): string | undefined {
  if (proxyKind(c) !== "sidecar") return undefined;
  const id = sidecarIdentity({ id: c.node?.id ?? "", metadata: metadataOf(c) });
  if (!id.namespace || !id.serviceAccount) return undefined;
  return spiffeIdOf(trustDomain, { namespace: id.namespace, serviceAccount: id.serviceAccount });
}

function adsTypeSync(c: ClientConfig, short: string, typeUrl: string): TypeSync {
  const entries = c.genericXdsConfigs.filter((g) => g.typeUrl === typeUrl);
  const first = entries[0];
  if (!first) return { type: short, state: "-", version: "", resources: [] };
  const base = { type: short, version: first.versionInfo, resources: entries.map((g) => g.name) };
  const nacked = entries.find((g) => g.configStatus === ConfigStatus.ERROR && g.errorState);
  if (nacked?.errorState) {
    const at = nacked.errorState.lastUpdateAttempt;
    return { ...base, state: "NACKED", nack: { message: nacked.errorState.details, version: nacked.errorState.versionInfo, ...(at ? { at: timestampDate(at) } : {}) } };
  }
  if (entries.every((g) => g.configStatus === ConfigStatus.SYNCED)) return { ...base, state: "SYNCED" };
  if (entries.every((g) => g.configStatus === ConfigStatus.NOT_SENT)) return { ...base, state: "NOT SENT" };
  return { ...base, state: "STALE", ...(first.lastUpdated ? { sentAt: timestampDate(first.lastUpdated) } : {}) };
}

/** SDS is per identity: the node agent serves every sidecar of one service account the same certificate. */
function sdsTypeSync(spiffeId: string | undefined, sds: SdsDebugJson | undefined): TypeSync {
  const none: TypeSync = { type: "SDS", state: "-", version: "", resources: [] };
  if (!sds || !spiffeId) return none;
  const ident = sds.identities.find((i) => i.spiffeId === spiffeId);
  if (!ident) return { ...none, state: "NOT SENT" };
  const base = { type: "SDS", version: ident.serialHex ?? "", resources: ["default", "ROOTCA"] };
  const issuedAt = ident.notBefore ? Date.parse(ident.notBefore) : 0;
  if (ident.lastNack && Date.parse(ident.lastNack.at) >= issuedAt) {
    return { ...base, state: "NACKED", nack: { message: ident.lastNack.message, version: ident.serialHex ?? "", at: new Date(ident.lastNack.at) } };
  }
  if (!ident.notAfter) {
    return ident.lastError ? { ...base, state: "NACKED", nack: { message: `no certificate: ${ident.lastError.message}`, version: "" } } : { ...base, state: "NOT SENT" };
  }
  return { ...base, state: ident.streams > 0 ? "SYNCED" : "STALE" };
}

export function proxySyncs(status: ClientStatusResponse, sds: SdsDebugJson | undefined): ProxySync[] {
  return status.config
    .map((c) => {
      const spiffeId = sds ? nodeSpiffeId(c, sds.trustDomain) : undefined;
      const kind = proxyKind(c);
      const types = ADS_TYPES.map((t) => adsTypeSync(c, t.short, t.typeUrl));
      if (kind === "sidecar") types.push(sdsTypeSync(spiffeId, sds));
      else types.push({ type: "SDS", state: "-", version: "", resources: [] });
      return { nodeId: c.node?.id ?? "", kind, spiffeId, types };
    })
    .sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
}
