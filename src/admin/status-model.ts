// What the status page shows (and /status.json serves): a plain JSON-able value the
// process builds from its parts. Every string in it may come from a client (node
// ids, NACK messages, file names): the page escapes all of them.

export type ProxySyncState = "SYNCED" | "STALE" | "NACKED" | "NOT SENT";

export interface StatusTypeSync {
  /** CDS, LDS, EDS, RDS or SDS. */
  type: string;
  state: ProxySyncState;
  /** The version meshkey sent last ("" before the first response). */
  version: string;
  /** STALE: when the waiting version was sent (ISO time). */
  sentAt?: string;
}

export interface StatusNack {
  type: string;
  version: string;
  message: string;
  at: string;
}

export interface StatusProxy {
  nodeId: string;
  kind: "sidecar" | "proxyless";
  /** Open ADS streams of this node. */
  streams: number;
  types: StatusTypeSync[];
  /** The most recent NACK of any type (kept after the proxy recovers, as history). */
  lastNack: StatusNack | null;
}

export interface StatusIdentity {
  spiffeId: string;
  serialHex?: string;
  notBefore?: string;
  notAfter?: string;
  /** When the node agent renews this certificate. */
  rotateAt?: string;
  /** Open SDS streams that watch it. */
  streams: number;
  /** The last failure to get a certificate, if any. */
  lastError?: { message: string; at: string };
}

export interface StatusMesh {
  /** A digest of the serving mesh (changes exactly when its content does). */
  version: string;
  /** Accepted mesh changes since start. */
  generation: number;
  /** The watched mesh file (absent: the built-in sample mesh). */
  file?: string;
  /** When the serving mesh ("the last good mesh file") was accepted. */
  acceptedAt: string;
  /** Services of the serving mesh: `<host>` and their ports. */
  services: Array<{ host: string; ports: string[]; endpoints: number }>;
  lastRejected: { at: string; error: string } | null;
}

export interface StatusCounters {
  /** Workload certificates issued (SDS agent + CA server), over the last window. */
  issuance: { total: number; perSecond: number; windowSeconds: number };
  /** Mesh change (or first request) to the proxy's ACK, over the recent pushes. */
  pushLatency: { count: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null; lastMs: number | null };
}

export interface StatusSnapshot {
  generatedAt: string;
  trustDomain: string;
  /** The trust anchor: its fingerprint as `openssl x509 -fingerprint -sha256` prints it. Null without a local CA. */
  root: { fingerprintSha256: string; notAfter: string; subject: string } | null;
  identities: StatusIdentity[];
  /** Null when this process runs no xDS server. */
  proxies: StatusProxy[] | null;
  mesh: StatusMesh | null;
  counters: StatusCounters;
}
