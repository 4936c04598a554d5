// The data behind the admin status page (`/`, `/status.json`): gathered from the
// parts' read-only views (CA root, secret cache / SDS debug, sync tracker, mesh
// controller, metrics registry) into one StatusSnapshot. Also the push-latency
// measurement (mesh change to ACK), which wraps the xDS sync tracker.
import { createHash, X509Certificate } from "node:crypto";
import { Histogram, type Registry } from "prom-client";
import type { StatusCounters, StatusIdentity, StatusMesh, StatusNack, StatusProxy, StatusSnapshot, StatusTypeSync } from "../admin/index.js";
import { fingerprintSha256 } from "../ca/index.js";
import type { MeshModel } from "../mesh/index.js";
import type { SdsDebugSnapshot } from "../sds/index.js";
import { TypeUrl, type MeshHistory, type NodeSyncStatus, type SyncTracker } from "../xds/index.js";

const ADS_TYPES: Array<[string, string]> = [
  ["CDS", TypeUrl.Cluster],
  ["LDS", TypeUrl.Listener],
  ["EDS", TypeUrl.Endpoint],
  ["RDS", TypeUrl.Route],
];

/** A connected node as the control plane sees it: what the tracker knows, plus its kind and what it should have. */
export interface ControlPlaneNode {
  sync: NodeSyncStatus;
  kind: "sidecar" | "proxyless";
  /** The SPIFFE ID a sidecar's id / metadata names (its SDS identity). */
  spiffeId: string | undefined;
  /** The version of the node's current snapshot for a type URL. */
  currentVersion(typeUrl: string): string | undefined;
}

/** ADS types: SYNCED (current version ACKed), NACKED (the version sent was refused), STALE (sent, not ACKed), as CSDS says. */
export function adsTypeState(sync: NodeSyncStatus, typeUrl: string, type: string, current: string | undefined): StatusTypeSync | undefined {
  const t = sync.types.find((x) => x.typeUrl === typeUrl);
  if (!t) return undefined;
  if (t.versionSent === "") return { type, state: "NOT SENT", version: "" };
  if (t.lastNack && t.lastNack.version === t.versionSent) return { type, state: "NACKED", version: t.versionSent };
  if (t.versionAcked === t.versionSent && (current === undefined || current === t.versionSent)) return { type, state: "SYNCED", version: t.versionSent };
  return { type, state: "STALE", version: t.versionSent, ...(t.sentAt ? { sentAt: t.sentAt } : {}) };
}

/** SDS is per identity: one certificate for every sidecar of a service account. */
export function sdsTypeState(spiffeId: string | undefined, sds: SdsDebugSnapshot | undefined): StatusTypeSync | undefined {
  if (!spiffeId || !sds) return undefined;
  const ident = sds.identities.find((i) => i.spiffeId === spiffeId);
  if (!ident) return { type: "SDS", state: "NOT SENT", version: "" };
  const version = ident.serialHex ?? "";
  const issuedAt = ident.notBefore ? Date.parse(ident.notBefore) : 0;
  if (ident.lastNack && Date.parse(ident.lastNack.at) >= issuedAt) return { type: "SDS", state: "NACKED", version };
  if (!ident.notAfter) return { type: "SDS", state: ident.lastError ? "NACKED" : "NOT SENT", version };
  return { type: "SDS", state: ident.streams > 0 ? "SYNCED" : "STALE", version };
}

export function proxyStatus(node: ControlPlaneNode, sds: SdsDebugSnapshot | undefined): StatusProxy {
  const { sync } = node;
  const types: StatusTypeSync[] = [];
  for (const [type, typeUrl] of ADS_TYPES) {
    const t = adsTypeState(sync, typeUrl, type, node.currentVersion(typeUrl));
    if (t) types.push(t);
  }
  const sdsState = node.kind === "sidecar" ? sdsTypeState(node.spiffeId, sds) : undefined;
  if (sdsState) types.push(sdsState);

  const nacks: StatusNack[] = sync.types.flatMap((t) => (t.lastNack ? [{ type: t.type, version: t.lastNack.version, message: t.lastNack.message, at: t.lastNack.at }] : []));
  const sdsNack = node.spiffeId ? sds?.identities.find((i) => i.spiffeId === node.spiffeId)?.lastNack : undefined;
  if (sdsNack) nacks.push({ type: "SDS", version: "", message: sdsNack.message, at: sdsNack.at });
  const lastNack = nacks.sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0] ?? null;
  return { nodeId: sync.nodeId, kind: node.kind, streams: sync.streams, types, lastNack };
}

export interface PushLatency {
  /** The tracker to hand the xDS servers: the same, with each ACK timed. */
  tracker: SyncTracker;
  stats(): StatusCounters["pushLatency"];
}

const RECENT_PUSHES = 512;

/**
 * Times each push from its cause to the proxy's ACK, as istiod's pilot_proxy_convergence_time:
 * the cause is the last mesh change when it came after the node's previous answer for that
 * type (or its stream opening), else the send itself (a new subscription). A NACK ends the
 * wait without a sample. Observed into meshkey_xds_push_latency_seconds{type}.
 */
export function trackPushLatency(inner: SyncTracker, options: { meshChangedAt: () => number | undefined; registry: Registry; now?: () => number }): PushLatency {
  const now = options.now ?? Date.now;
  const { registry } = options;
  const name = "meshkey_xds_push_latency_seconds";
  const histogram =
    (registry.getSingleMetric(name) as Histogram<"type"> | undefined) ??
    new Histogram({
      name,
      help: "Mesh change (or first request) to the proxy's ACK of the response, by xDS type",
      labelNames: ["type"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
  const short = new Map(ADS_TYPES.map(([s, u]) => [u, s]));
  /** Per node: when its first open stream opened, and per type the last answer and the pending push. */
  const nodes = new Map<string, { openedAt: number; answeredAt: Map<string, number>; pending: Map<string, { version: string; since: number }> }>();
  const recent: number[] = [];
  let total = 0;
  let last: number | null = null;

  const tracker: SyncTracker = {
    ...inner,
    streamOpened(nodeId, protocol) {
      if (!nodes.has(nodeId)) nodes.set(nodeId, { openedAt: now(), answeredAt: new Map(), pending: new Map() });
      inner.streamOpened(nodeId, protocol);
    },
    streamClosed(nodeId) {
      inner.streamClosed(nodeId);
      if (!inner.node(nodeId)) nodes.delete(nodeId);
    },
    sent(nodeId, typeUrl, version, nonce, resources) {
      inner.sent(nodeId, typeUrl, version, nonce, resources);
      const n = nodes.get(nodeId);
      if (!n || n.pending.get(typeUrl)?.version === version) return;
      const t = now();
      const changed = options.meshChangedAt();
      const after = n.answeredAt.get(typeUrl) ?? n.openedAt;
      n.pending.set(typeUrl, { version, since: changed !== undefined && changed > after && changed <= t ? changed : t });
    },
    acked(nodeId, typeUrl, version) {
      inner.acked(nodeId, typeUrl, version);
      const n = nodes.get(nodeId);
      if (!n) return;
      const t = now();
      n.answeredAt.set(typeUrl, t);
      const p = n.pending.get(typeUrl);
      if (!p || p.version !== version) return;
      n.pending.delete(typeUrl);
      const ms = t - p.since;
      histogram.observe({ type: short.get(typeUrl) ?? typeUrl }, ms / 1000);
      total++;
      last = ms;
      recent.push(ms);
      if (recent.length > RECENT_PUSHES) recent.shift();
    },
    nacked(nodeId, typeUrl, version, nonce, message) {
      inner.nacked(nodeId, typeUrl, version, nonce, message);
      const n = nodes.get(nodeId);
      if (!n) return;
      n.answeredAt.set(typeUrl, now());
      n.pending.delete(typeUrl);
    },
  };
  return {
    tracker,
    stats() {
      const sorted = [...recent].sort((a, b) => a - b);
      const q = (p: number) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!);
      return { count: total, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: sorted.length ? sorted[sorted.length - 1]! : null, lastMs: last };
    },
  };
}

/** A counter's rate over a sliding window, from samples taken when asked (no timer). */
export function createRateMeter(windowMs = 60_000, now: () => number = Date.now) {
  const samples: Array<{ t: number; v: number }> = [{ t: now(), v: 0 }];
  return (value: number): { perSecond: number; windowSeconds: number } => {
    const t = now();
    samples.push({ t, v: value });
    // Keep one sample at or before the window's start as the baseline.
    while (samples.length > 2 && samples[1]!.t <= t - windowMs) samples.shift();
    const base = samples[0]!;
    const dt = (t - base.t) / 1000;
    return { perSecond: dt > 0 ? Math.max(0, value - base.v) / dt : 0, windowSeconds: Math.round(dt) };
  };
}

/** Certificates issued: by the node agent (meshkey_sds_csr_total{result="success"}) and the CA server (meshkey_ca_csr_total{result="issued"}). */
async function issuedTotal(registry: Registry): Promise<number> {
  let total = 0;
  for (const [name, result] of [["meshkey_sds_csr_total", "success"], ["meshkey_ca_csr_total", "issued"]] as const) {
    const metric = registry.getSingleMetric(name);
    if (!metric) continue;
    for (const v of (await metric.get()).values) if (v.labels.result === result) total += v.value;
  }
  return total;
}

/** A digest of the mesh's content: the version the page shows (memoised per model). */
const meshDigests = new WeakMap<MeshModel, string>();
export function meshVersion(model: MeshModel): string {
  let v = meshDigests.get(model);
  if (!v) meshDigests.set(model, (v = createHash("sha256").update(JSON.stringify(model)).digest("hex").slice(0, 12)));
  return v;
}

export function meshStatus(model: MeshModel, history: MeshHistory): StatusMesh {
  return {
    version: meshVersion(model),
    generation: history.lastGood.generation,
    ...(history.file ? { file: history.file } : {}),
    acceptedAt: history.lastGood.at,
    services: model.services.map((s) => ({ host: s.host, ports: s.ports.map((p) => `${p.port}/${p.protocol}`), endpoints: s.endpoints.length })),
    lastRejected: history.lastRejected,
  };
}

export interface StatusDataOptions {
  trustDomain: string;
  registry: Registry;
  rootCertPem?: () => string | undefined;
  sds?: () => SdsDebugSnapshot;
  controlPlane?: { nodes(): ControlPlaneNode[]; mesh(): MeshModel; meshHistory(): MeshHistory; pushLatency(): StatusCounters["pushLatency"] };
  now?: () => number;
}

export function createStatusData(options: StatusDataOptions): () => Promise<StatusSnapshot> {
  const now = options.now ?? Date.now;
  const issuanceRate = createRateMeter(60_000, now);
  let rootMemo: { pem: string; root: StatusSnapshot["root"] } | undefined;
  const root = (): StatusSnapshot["root"] => {
    const pem = options.rootCertPem?.();
    if (!pem) return null;
    if (rootMemo?.pem !== pem) {
      const cert = new X509Certificate(pem);
      rootMemo = { pem, root: { fingerprintSha256: fingerprintSha256(cert.raw), notAfter: new Date(cert.validTo).toISOString(), subject: cert.subject.replace(/\n/g, ", ") } };
    }
    return rootMemo.root;
  };
  return async () => {
    const sds = options.sds?.();
    const identities: StatusIdentity[] = (sds?.identities ?? []).map((i) => ({
      spiffeId: i.spiffeId,
      ...(i.serialHex ? { serialHex: i.serialHex } : {}),
      ...(i.notBefore ? { notBefore: i.notBefore } : {}),
      ...(i.notAfter ? { notAfter: i.notAfter } : {}),
      ...(i.rotateAt ? { rotateAt: i.rotateAt } : {}),
      streams: i.streams,
      ...(i.lastError ? { lastError: { message: i.lastError.message, at: i.lastError.at } } : {}),
    }));
    identities.sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
    const cp = options.controlPlane;
    const total = await issuedTotal(options.registry);
    return {
      generatedAt: new Date(now()).toISOString(),
      trustDomain: options.trustDomain,
      root: root(),
      identities,
      proxies: cp ? cp.nodes().map((n) => proxyStatus(n, sds)) : null,
      mesh: cp ? meshStatus(cp.mesh(), cp.meshHistory()) : null,
      counters: {
        issuance: { total, ...issuanceRate(total) },
        pushLatency: cp?.pushLatency() ?? { count: 0, p50Ms: null, p99Ms: null, maxMs: null, lastMs: null },
      },
    };
  };
}
