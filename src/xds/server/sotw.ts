// State-of-the-world ADS (StreamAggregatedResources), as go-control-plane's
// pkg/server/sotw: per type a nonce and a version; an ACK sends nothing; a NACK is
// recorded and nothing is resent until the snapshot changes; a stale nonce is
// ignored; legacy wildcard (empty names on the first request) and "*"; pushes of
// several types drain in CDS → EDS → LDS → RDS order, a shrinking LDS/CDS last.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../../gen/envoy/service/discovery/v3/discovery_pb.js";
import type { CachedResource } from "../cache/snapshot.js";
import type { CancelWatch, ConfigWatcher, HeldState, WatchNode, WatchResponse } from "../cache/watch.js";
import { FULL_STATE_TYPES, PUSH_ORDER, pushRank } from "../resource/type-urls.js";
import { MAX_TYPES_PER_STREAM, checkResourceNames, checkTypeUrl, watchNodeOf } from "./ads-limits.js";
import { keepName, type NameInterner } from "./name-interner.js";
import type { PushThrottle } from "./push-throttle.js";
import { sotwResponseMessage } from "./packed-resources.js";
import { createStreamQueue, serveStream } from "./stream-queue.js";
import type { SyncTracker } from "./sync-tracker.js";
import type { StreamDrain } from "./stream-drain.js";

export interface StreamDeps {
  watcher: ConfigWatcher;
  tracker: SyncTracker;
  logger: Logger;
  /** Refuses (throws a ConnectError) a node the stream may not be, before anything is watched. */
  checkNode?: (node: WatchNode) => void;
  /** Told whether this stream is settled (nothing queued, every response answered), for shutdown. */
  drain?: StreamDrain;
  /** One string per resource name across streams (default: names kept as each request sent them). */
  intern?: NameInterner;
  /** Bounds the responses being written at once across streams (default: no bound). */
  throttle?: PushThrottle;
}

interface TypeState {
  nonce: string;
  /** The last of our nonces the client answered (ACK or NACK). */
  answered: string;
  versionSent: string;
  /** The resources of the last response sent (for the make-before-break order of a shrinking LDS/CDS). */
  sentResources: readonly CachedResource[];
  /** What the last response brings the client once it ACKs it; held: what the client ACKed. */
  sent: HeldState | undefined;
  held: HeldState | undefined;
  names: Set<string>;
  wildcard: boolean;
  legacyWildcard: boolean;
  subscribed: boolean;
  cancel: CancelWatch | undefined;
}

const sameSet = (a: ReadonlySet<string>, b: ReadonlySet<string>) => a.size === b.size && [...a].every((x) => b.has(x));

export async function* sotwStream(
  requests: AsyncIterable<DiscoveryRequest>,
  signal: AbortSignal,
  deps: StreamDeps,
): AsyncGenerator<DiscoveryResponse> {
  const { watcher, tracker } = deps;
  const states = new Map<string, TypeState>();
  const queue = createStreamQueue<WatchResponse>();
  let node: WatchNode | undefined;
  let log = deps.logger;
  let nonces = 0;
  const intern = deps.intern ?? keepName;
  const untrack = deps.drain?.track(() => queue.size() === 0 && [...states.values()].every((st) => st.answered === st.nonce));

  const handle = (req: DiscoveryRequest) => {
    if (!node) {
      const claimed = watchNodeOf(req.node);
      deps.checkNode?.(claimed);
      node = claimed;
      log = deps.logger.child({ node: node.id, protocol: "sotw" });
      log.info("proxy connected (ADS stream opened)");
      tracker.streamOpened(node.id, "sotw");
      watcher.openNode(node);
    }
    const nodeId = node.id;
    const typeUrl = req.typeUrl;
    checkTypeUrl(typeUrl);
    checkResourceNames(req.resourceNames);
    let st = states.get(typeUrl);
    if (!st) {
      if (states.size >= MAX_TYPES_PER_STREAM) throw new ConnectError(`too many types on one stream (MAX_TYPES_PER_STREAM ${MAX_TYPES_PER_STREAM})`, Code.ResourceExhausted);
      st = { nonce: "", answered: "", versionSent: "", sentResources: [], sent: undefined, held: undefined, names: new Set(), wildcard: false, legacyWildcard: false, subscribed: false, cancel: undefined };
      states.set(typeUrl, st);
    }
    if (st.nonce !== "" && req.responseNonce !== st.nonce) {
      log.debug({ typeUrl, nonce: req.responseNonce, expected: st.nonce }, "stale nonce ignored");
      return;
    }
    if (req.responseNonce !== "" && req.responseNonce === st.nonce) {
      st.answered = st.nonce;
      if (req.errorDetail) {
        tracker.nacked(nodeId, typeUrl, st.versionSent, st.nonce, req.errorDetail.message);
        log.warn({ typeUrl, version: st.versionSent, error: req.errorDetail.message }, "NACK");
      } else {
        tracker.acked(nodeId, typeUrl, req.versionInfo);
        st.held = st.sent;
      }
    }
    const asked = req.resourceNames;
    if (!st.subscribed && asked.length === 0) st.legacyWildcard = true;
    if (asked.length > 0 && !asked.includes("*")) st.legacyWildcard = false;
    const wildcard = asked.includes("*") || (asked.length === 0 && st.legacyWildcard);
    let names = new Set(asked.flatMap((n) => (n === "*" ? [] : [intern(n)])));
    const changed = st.subscribed && (wildcard !== st.wildcard || !sameSet(names, st.names));
    // An ACK repeats the names: the set the stream holds (and what it was sent) stays the one object.
    if (st.subscribed && sameSet(names, st.names)) names = st.names;
    st.subscribed = true;
    st.wildcard = wildcard;
    st.names = names;
    if (changed) queue.drop(typeUrl); // a queued answer to the old subscription is not sent
    st.cancel?.();
    st.cancel = undefined;
    if (!wildcard && names.size === 0) {
      // Unsubscribed from every resource of the type: nothing to watch, nothing to send.
      queue.drop(typeUrl);
      return;
    }
    const state = st;
    let fired = false;
    const cancel = watcher.createWatch(
      nodeId,
      {
        typeUrl,
        names,
        wildcard,
        knownVersion: st.versionSent,
        force: changed,
        ...(st.held && !FULL_STATE_TYPES.has(typeUrl) ? { held: st.held } : {}),
      },
      (response) => {
        fired = true;
        state.cancel = undefined;
        // LDS/CDS that drop something the client has go after the other types (make before break).
        let shrinks = false;
        if (FULL_STATE_TYPES.has(typeUrl)) for (const r of state.sentResources) if (!response.state.has(r.name)) shrinks = true;
        queue.put(typeUrl, pushRank(typeUrl) + (shrinks ? PUSH_ORDER.length + 1 : 0), response);
      },
    );
    state.cancel = fired ? undefined : cancel;
  };

  try {
    yield* serveStream(requests, signal, queue, handle, (next) => {
      const st = states.get(next.typeUrl);
      if (!st || !node) return undefined;
      const nonce = String(++nonces);
      st.nonce = nonce;
      st.versionSent = next.version;
      st.sentResources = next.resources;
      st.sent = { resources: next.state, names: st.wildcard ? undefined : st.names };
      tracker.sent(node.id, next.typeUrl, next.version, nonce, next.resources.length);
      return sotwResponseMessage({ versionInfo: next.version, typeUrl: next.typeUrl, nonce }, next.resources, next.shared);
    }, deps.throttle);
  } finally {
    untrack?.();
    for (const st of states.values()) st.cancel?.();
    if (node) {
      log.info("proxy disconnected (ADS stream closed)");
      watcher.closeNode(node.id);
      tracker.streamClosed(node.id);
    }
  }
}
