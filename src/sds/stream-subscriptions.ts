// What a protocol session (SotW or delta, one per stream) needs from the server:
// the cache, the verified caller, and callbacks to send, end and report.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Status } from "../../gen/google/rpc/status_pb.js";
import type { CaProviderError } from "./ca-provider.js";
import type { AuthenticatedCaller } from "./ca-types.js";
import type { SecretCache, SecretItem, SecretWatch, WatchCallbacks } from "./secret-cache.js";

export interface NackReport {
  names: string[];
  versions: string[];
  code: number;
  message: string;
}

export interface SessionContext<Res> {
  cache: SecretCache;
  caller: AuthenticatedCaller;
  token: string;
  send(response: Res, items: readonly SecretItem[]): void;
  end(error: ConnectError): void;
  onNack(report: NackReport): void;
  onUnknownName(name: string): void;
}

/** Maps a failed first issuance to the status the stream ends with. */
export function issueFailureToConnect(err: CaProviderError): ConnectError {
  if (err.kind === "unauthenticated") return new ConnectError(err.message, Code.Unauthenticated);
  if (err.kind === "invalid") return new ConnectError(`certificate could not be issued: ${err.message}`, Code.FailedPrecondition);
  return new ConnectError(err.message, Code.Unavailable);
}

export function nackReport(names: string[], versions: string[], status: Status): NackReport {
  return { names, versions, code: status.code, message: status.message };
}

/** Subscribes one name; undefined (and reported) when the cache does not know it. */
export function subscribe<Res>(
  ctx: SessionContext<Res>,
  name: string,
  onChange: (item: SecretItem) => void,
): SecretWatch | undefined {
  const callbacks: WatchCallbacks = {
    onUpdate: onChange,
    onRevoked: (reason) => ctx.end(new ConnectError(reason, Code.Unauthenticated)),
    onFailed: (err) => ctx.end(issueFailureToConnect(err)),
  };
  const watch = ctx.cache.watch(ctx.caller, ctx.token, name, callbacks);
  if (!watch) ctx.onUnknownName(name);
  return watch;
}

/** Names one stream may watch at once (Envoy opens one stream per name; this only bounds abuse). */
export const MAX_NAMES_PER_STREAM = 64;

/** Longest secret name, in UTF-8 bytes: a SPIFFE ID is at most 2,048 bytes (SPIFFE-ID §2.3). */
export const MAX_NAME_BYTES = 2_048;
/** Open SDS streams one identity (SPIFFE ID) may hold at once; one Envoy opens a few. */
export const MAX_STREAMS_PER_IDENTITY = 1_024;
/** Unknown names kept for /debug/sds (a sample: the oldest go first), each cut to UNKNOWN_NAME_SAMPLE_CHARS. */
export const MAX_UNKNOWN_NAME_SAMPLE = 256;
export const UNKNOWN_NAME_SAMPLE_CHARS = 128;
/** At most this many "unknown secret name" warnings per UNKNOWN_NAME_LOG_WINDOW_MS; the rest are counted. */
export const UNKNOWN_NAME_LOGS_PER_WINDOW = 10;
export const UNKNOWN_NAME_LOG_WINDOW_MS = 60_000;

export function checkNameCount(count: number): void {
  if (count > MAX_NAMES_PER_STREAM) {
    throw new ConnectError(
      `too many secret names on one stream (${count} > ${MAX_NAMES_PER_STREAM}, MAX_NAMES_PER_STREAM)`,
      Code.ResourceExhausted,
    );
  }
}

/** Refuses a name longer than MAX_NAME_BYTES (INVALID_ARGUMENT, naming the limit). */
export function checkNames(names: Iterable<string>): void {
  for (const name of names) {
    if (name.length > MAX_NAME_BYTES || Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) {
      throw new ConnectError(
        `secret name of ${Buffer.byteLength(name, "utf8")} bytes is longer than ${MAX_NAME_BYTES} bytes (MAX_NAME_BYTES; a SPIFFE ID is at most 2,048)`,
        Code.InvalidArgument,
      );
    }
  }
}

/** A name as logs and debug pages show it: at most UNKNOWN_NAME_SAMPLE_CHARS characters. */
export function truncateName(name: string): string {
  return name.length <= UNKNOWN_NAME_SAMPLE_CHARS ? name : `${name.slice(0, UNKNOWN_NAME_SAMPLE_CHARS)}…(${name.length} chars)`;
}

export function checkTypeUrl(typeUrl: string, expected: string): void {
  if (typeUrl !== "" && typeUrl !== expected) {
    throw new ConnectError(`unsupported type URL "${typeUrl}": this server only serves ${expected}`, Code.InvalidArgument);
  }
}

/** A response the client has not answered yet: which versions of which names it carried. */
export interface OutstandingResponse {
  nonce: string;
  names: string[];
  versions: string[];
}

/**
 * The names one stream watches, and per name the version last sent and the version
 * the client NACKed. Shared by the SotW and delta sessions, which differ only in how
 * a request changes the names and in the response they build.
 */
export interface StreamSubscriptions {
  /** Set once the session closed (possibly from inside a subscribe, e.g. a revoked token). */
  readonly closed: boolean;
  readonly sent: Map<string, string>;
  readonly nacked: Map<string, string>;
  has(name: string): boolean;
  size(): number;
  names(): string[];
  /** Each watched name's current secret (names still being issued are left out). */
  current(): SecretItem[];
  /** Watches `name` (no-op if already watched); `onChange` runs when it has a version not yet sent. */
  add(name: string): void;
  remove(name: string): void;
  /** Marks `items` as sent in the response with `nonce`; returns it as the outstanding response. */
  recordSent(items: readonly SecretItem[], nonce: string): OutstandingResponse;
  /** The client answered `outstanding`: a NACK (error_detail) remembers every version it rejected. */
  settle(outstanding: OutstandingResponse, errorDetail: Status | undefined): void;
  close(): void;
}

export function createStreamSubscriptions<Res>(ctx: SessionContext<Res>, onChange: () => void): StreamSubscriptions {
  const watches = new Map<string, SecretWatch | undefined>();
  const sent = new Map<string, string>();
  const nacked = new Map<string, string>();
  let closed = false;
  return {
    get closed() {
      return closed;
    },
    sent,
    nacked,
    has: (name) => watches.has(name),
    size: () => watches.size,
    names: () => [...watches.keys()],
    current() {
      const items: SecretItem[] = [];
      for (const w of watches.values()) {
        const item = w?.current();
        if (item) items.push(item);
      }
      return items;
    },
    add(name) {
      if (closed || watches.has(name)) return;
      watches.set(name, undefined); // an unknown name stays remembered, so it is reported once
      const w = subscribe(ctx, name, (item) => {
        if (item.name === name && sent.get(name) !== item.version) onChange();
      });
      if (closed) {
        w?.cancel();
        return;
      }
      watches.set(name, w);
    },
    remove(name) {
      watches.get(name)?.cancel();
      watches.delete(name);
      sent.delete(name);
      nacked.delete(name);
    },
    recordSent(items, nonce) {
      for (const it of items) sent.set(it.name, it.version);
      return { nonce, names: items.map((i) => i.name), versions: items.map((i) => i.version) };
    },
    settle(outstanding, errorDetail) {
      if (!errorDetail) return;
      for (let i = 0; i < outstanding.names.length; i++) nacked.set(outstanding.names[i]!, outstanding.versions[i]!);
      ctx.onNack(nackReport(outstanding.names, outstanding.versions, errorDetail));
    },
    close() {
      closed = true;
      for (const w of watches.values()) w?.cancel();
      watches.clear();
    },
  };
}
