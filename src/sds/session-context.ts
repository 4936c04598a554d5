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
  onWatch(name: string, spiffeId: string): void;
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
  else ctx.onWatch(name, watch.spiffeId);
  return watch;
}

/** Names one stream may watch at once (Envoy opens one stream per name; this only bounds abuse). */
export const MAX_NAMES_PER_STREAM = 64;

export function checkNameCount(count: number): void {
  if (count > MAX_NAMES_PER_STREAM) {
    throw new ConnectError(`too many secret names on one stream (${count} > ${MAX_NAMES_PER_STREAM})`, Code.ResourceExhausted);
  }
}

export function checkTypeUrl(typeUrl: string, expected: string): void {
  if (typeUrl !== "" && typeUrl !== expected) {
    throw new ConnectError(`unsupported type URL "${typeUrl}": this server only serves ${expected}`, Code.InvalidArgument);
  }
}
