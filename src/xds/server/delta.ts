// Incremental ADS (DeltaAggregatedResources), as go-control-plane's
// pkg/server/delta: per-resource versions; initial_resource_versions on the first
// request of a type; subscribe / unsubscribe (with "*" for wildcard, and the legacy
// wildcard of an empty first subscribe); removed_resources; stale nonces never
// block subscription changes; updates drain in CDS → EDS → LDS → RDS order and
// removals after them, in reverse order.
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from "../../../gen/envoy/service/discovery/v3/discovery_pb.js";
import type { CancelWatch, DeltaWatchResponse, WatchNode } from "../cache/watch.js";
import { PUSH_ORDER, pushRank } from "../resource/type-urls.js";
import { MAX_NAMES_PER_REQUEST, MAX_TYPES_PER_STREAM, checkResourceNames, checkTypeUrl, watchNodeOf } from "./ads-limits.js";
import { deltaResponseMessage } from "./packed-resources.js";
import { keepName } from "./name-interner.js";
import type { StreamDeps } from "./sotw.js";
import { createStreamQueue, serveStream } from "./stream-queue.js";

interface DeltaTypeState {
  subscribed: Set<string>;
  wildcard: boolean;
  known: Map<string, string>;
  nonce: string;
  /** The last of our nonces the client answered (ACK or NACK). */
  answered: string;
  systemVersion: string;
  cancel: CancelWatch | undefined;
}

export async function* deltaStream(
  requests: AsyncIterable<DeltaDiscoveryRequest>,
  signal: AbortSignal,
  deps: StreamDeps,
): AsyncGenerator<DeltaDiscoveryResponse> {
  const { watcher, tracker } = deps;
  const intern = deps.intern ?? keepName;
  const states = new Map<string, DeltaTypeState>();
  const queue = createStreamQueue<DeltaWatchResponse>();
  let node: WatchNode | undefined;
  let log = deps.logger;
  let nonces = 0;
  const untrack = deps.drain?.track(() => queue.size() === 0 && [...states.values()].every((st) => st.answered === st.nonce));

  const watch = (typeUrl: string, st: DeltaTypeState) => {
    st.cancel?.();
    queue.drop(`${typeUrl}|update`);
    queue.drop(`${typeUrl}|remove`);
    let fired = false;
    const cancel = watcher.createDeltaWatch(
      node!.id,
      { typeUrl, subscribed: st.subscribed, wildcard: st.wildcard, known: st.known },
      (response) => {
        fired = true;
        st.cancel = undefined;
        if (response.updated.length > 0) {
          queue.put(`${typeUrl}|update`, pushRank(typeUrl), { ...response, removed: [] });
        }
        if (response.removed.length > 0) {
          queue.put(`${typeUrl}|remove`, 2 * PUSH_ORDER.length + 2 - pushRank(typeUrl), { ...response, updated: [] });
        }
      },
    );
    // A watch answered at once is already over; one that waits can be cancelled.
    st.cancel = fired ? undefined : cancel;
  };

  const handle = (req: DeltaDiscoveryRequest) => {
    if (!node) {
      const claimed = watchNodeOf(req.node);
      deps.checkNode?.(claimed);
      node = claimed;
      log = deps.logger.child({ node: node.id, protocol: "delta" });
      log.info("proxy connected (ADS stream opened)");
      tracker.streamOpened(node.id, "delta");
      watcher.openNode(node);
    }
    const typeUrl = req.typeUrl;
    checkTypeUrl(typeUrl);
    checkResourceNames([...req.resourceNamesSubscribe, ...req.resourceNamesUnsubscribe]);
    let st = states.get(typeUrl);
    if (!st) {
      if (states.size >= MAX_TYPES_PER_STREAM) throw new ConnectError(`too many types on one stream (MAX_TYPES_PER_STREAM ${MAX_TYPES_PER_STREAM})`, Code.ResourceExhausted);
      // initial_resource_versions counts like names: bounded in number and length.
      checkResourceNames(Object.keys(req.initialResourceVersions), "initial_resource_versions");
      st = {
        subscribed: new Set(),
        wildcard: req.resourceNamesSubscribe.length === 0,
        known: new Map(Object.entries(req.initialResourceVersions)),
        nonce: "",
        answered: "",
        systemVersion: "",
        cancel: undefined,
      };
      states.set(typeUrl, st);
    }
    if (req.responseNonce !== "" && req.responseNonce === st.nonce) {
      st.answered = st.nonce;
      if (req.errorDetail) {
        tracker.nacked(node.id, typeUrl, st.systemVersion, st.nonce, req.errorDetail.message);
        log.warn({ typeUrl, error: req.errorDetail.message }, "delta NACK");
      } else tracker.acked(node.id, typeUrl, st.systemVersion);
    }
    // Subscription changes apply even when the nonce is stale.
    for (const name of req.resourceNamesSubscribe) {
      if (name === "*") st.wildcard = true;
      else st.subscribed.add(intern(name));
    }
    if (st.subscribed.size > MAX_NAMES_PER_REQUEST) {
      throw new ConnectError(`too many names subscribed to ${typeUrl} on one stream (MAX_NAMES_PER_REQUEST ${MAX_NAMES_PER_REQUEST})`, Code.ResourceExhausted);
    }
    for (const name of req.resourceNamesUnsubscribe) {
      if (name === "*") {
        st.wildcard = false;
        // The client drops what only the wildcard gave it.
        for (const n of [...st.known.keys()]) if (!st.subscribed.has(n)) st.known.delete(n);
      } else {
        st.subscribed.delete(name);
        // Under the wildcard the client keeps the resource; otherwise it forgets it.
        if (!st.wildcard) st.known.delete(name);
      }
    }
    watch(typeUrl, st);
  };

  try {
    yield* serveStream(requests, signal, queue, handle, (next) => {
      const st = states.get(next.typeUrl);
      if (!st || !node) return undefined;
      const nonce = String(++nonces);
      st.nonce = nonce;
      st.systemVersion = next.systemVersion;
      for (const r of next.updated) st.known.set(r.name, r.version);
      for (const n of next.removed) st.known.delete(n);
      tracker.sent(node.id, next.typeUrl, next.systemVersion, nonce, next.updated.length);
      const response = deltaResponseMessage(
        { systemVersionInfo: next.systemVersion, typeUrl: next.typeUrl, nonce, removedResources: next.removed },
        next.updated,
      );
      // Keep watching: what was just sent is now known, so only later changes answer.
      if (st.cancel === undefined) watch(next.typeUrl, st);
      return response;
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
