// What /debug/sds shows of the SDS server, with every table bounded: the open streams,
// the last NACK per identity (MAX_NACK_RECORDS identities, the oldest go first), and a
// sample of the unknown secret names asked for (MAX_UNKNOWN_NAME_SAMPLE names, each
// truncated). "unknown secret name" warnings are rate-limited: at most
// UNKNOWN_NAME_LOGS_PER_WINDOW per UNKNOWN_NAME_LOG_WINDOW_MS, the next one says how many
// were suppressed.
import type { Logger } from "pino";
import type { SecretCacheDebug } from "./secret-cache.js";
import type { SdsMetrics } from "./sds-metrics.js";
import {
  MAX_UNKNOWN_NAME_SAMPLE,
  UNKNOWN_NAME_LOGS_PER_WINDOW,
  UNKNOWN_NAME_LOG_WINDOW_MS,
  truncateName,
  type NackReport,
} from "./stream-subscriptions.js";

/** Identities whose last NACK is kept. */
export const MAX_NACK_RECORDS = 4096;

export type NackRecord = NackReport & { at: string };

export interface SdsStreamDebug {
  id: string;
  rpc: "StreamSecrets" | "DeltaSecrets";
  spiffeId: string;
  names: string[];
  openedAt: string;
  pushes: number;
  lastNack: NackRecord | undefined;
}

export interface SdsDebugSnapshot {
  socket: string;
  trustDomain: string;
  rootFingerprint: string | undefined;
  identities: Array<SecretCacheDebug["identities"][number] & { streams: number; lastNack: NackRecord | undefined }>;
  streams: SdsStreamDebug[];
  /** A bounded sample (MAX_UNKNOWN_NAME_SAMPLE names, each truncated), not every name ever asked. */
  unknownNames: Array<{ name: string; count: number; lastSpiffeId: string; lastSeen: string }>;
  unknownNamesTotal: number;
  authFailures: number;
}

/** One open stream as the view keeps it: its debug record and, once it runs, its session (for the names). */
export type StreamEntry = SdsStreamDebug & { session?: { names(): string[] } };

export interface SdsDebugViewOptions {
  log: Logger;
  metrics: Pick<SdsMetrics, "unknownNames">;
  /** Clock for the log rate limit and the timestamps (default Date.now). */
  now?: () => number;
  /** Default MAX_NACK_RECORDS. */
  maxNackRecords?: number;
}

export interface SdsDebugView {
  /** A new stream's record, with openedAt set by the view's clock. */
  newStream(id: string, rpc: SdsStreamDebug["rpc"], spiffeId: string): StreamEntry;
  opened(entry: StreamEntry): void;
  closed(id: string): void;
  /** Remembers a NACK on the stream and as its identity's last one. */
  recordNack(entry: StreamEntry, report: NackReport): void;
  /** A requested name this agent does not serve: counted, sampled, logged within the rate limit. */
  recordUnknownName(name: string, spiffeId: string, streamId: string): void;
  snapshot(cache: SecretCacheDebug, socket: string, authFailures: number): SdsDebugSnapshot;
}

export function createSdsDebugView(options: SdsDebugViewOptions): SdsDebugView {
  const { log } = options;
  const now = options.now ?? Date.now;
  const maxNackRecords = options.maxNackRecords ?? MAX_NACK_RECORDS;
  const iso = () => new Date(now()).toISOString();
  const streams = new Map<string, StreamEntry>();
  const lastNackBySpiffeId = new Map<string, NackRecord>();
  const unknownNames = new Map<string, { name: string; count: number; lastSpiffeId: string; lastSeen: string }>();
  let unknownNameCount = 0;
  let logWindowStart = -Infinity;
  let logsInWindow = 0;
  let suppressedLogs = 0;

  return {
    newStream: (id, rpc, spiffeId) => ({ id, rpc, spiffeId, names: [], openedAt: iso(), pushes: 0, lastNack: undefined }),
    opened(entry) {
      streams.set(entry.id, entry);
    },
    closed(id) {
      streams.delete(id);
    },
    recordNack(entry, report) {
      const at = { ...report, at: iso() };
      entry.lastNack = at;
      lastNackBySpiffeId.delete(entry.spiffeId);
      if (lastNackBySpiffeId.size >= maxNackRecords) lastNackBySpiffeId.delete(lastNackBySpiffeId.keys().next().value!);
      lastNackBySpiffeId.set(entry.spiffeId, at);
    },
    recordUnknownName(fullName, spiffeId, streamId) {
      options.metrics.unknownNames.inc();
      unknownNameCount++;
      const name = truncateName(fullName);
      const t = now();
      if (t - logWindowStart >= UNKNOWN_NAME_LOG_WINDOW_MS) {
        logWindowStart = t;
        logsInWindow = 0;
      }
      if (logsInWindow < UNKNOWN_NAME_LOGS_PER_WINDOW) {
        logsInWindow++;
        const suppressed = suppressedLogs;
        suppressedLogs = 0;
        log.warn({ stream: streamId, spiffeId, name, ...(suppressed > 0 ? { suppressed } : {}) }, "unknown secret name requested: not answered");
      } else suppressedLogs++;
      const u = unknownNames.get(name);
      if (u) {
        u.count++;
        u.lastSpiffeId = spiffeId;
        u.lastSeen = new Date(t).toISOString();
        return;
      }
      if (unknownNames.size >= MAX_UNKNOWN_NAME_SAMPLE) unknownNames.delete(unknownNames.keys().next().value!);
      unknownNames.set(name, { name, count: 1, lastSpiffeId: spiffeId, lastSeen: new Date(t).toISOString() });
    },
    snapshot(c, socket, authFailures) {
      const perId = new Map<string, number>();
      for (const s of streams.values()) perId.set(s.spiffeId, (perId.get(s.spiffeId) ?? 0) + 1);
      return {
        socket,
        trustDomain: c.trustDomain,
        rootFingerprint: c.rootFingerprint,
        identities: c.identities.map((i) => ({
          ...i,
          streams: perId.get(i.spiffeId) ?? 0,
          lastNack: lastNackBySpiffeId.get(i.spiffeId),
        })),
        streams: [...streams.values()].map(({ session, ...s }) => ({ ...s, names: (session?.names() ?? []).map(truncateName) })),
        unknownNames: [...unknownNames.values()],
        unknownNamesTotal: unknownNameCount,
        authFailures,
      };
    },
  };
}
