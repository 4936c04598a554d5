// StreamSecrets (state of the world) on one stream: per-stream version and nonce;
// a response is sent only when the client holds no un-ACKed one, so several
// changes before an ACK collapse into one response; a NACKed version is never
// resent (only a newer one is); requests with a stale nonce are ignored.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  DiscoveryResponseSchema,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SECRET_TYPE_URL } from "../spiffe/index.js";
import { packSecret } from "./secret-resource.js";
import { checkNameCount, checkNames, checkTypeUrl, createStreamSubscriptions, type OutstandingResponse, type SessionContext } from "./stream-subscriptions.js";

export interface SotwSession {
  onRequest(request: DiscoveryRequest): void;
  /** Names this stream watches (debug). */
  names(): string[];
  close(): void;
}

export function createSotwSession(ctx: SessionContext<DiscoveryResponse>, streamId: string): SotwSession {
  const subs = createStreamSubscriptions(ctx, () => maybeSend());
  let outstanding: OutstandingResponse | undefined;
  let version = 0;
  let nonce = 0;

  function maybeSend(): void {
    if (subs.closed || outstanding) return;
    // State of the world: once anything changed, the response carries every secret
    // of the stream (except versions the client rejected).
    const items = subs.current().filter((it) => subs.nacked.get(it.name) !== it.version);
    if (!items.some((it) => subs.sent.get(it.name) !== it.version)) return;
    const n = `${streamId}-${++nonce}`;
    const init: MessageInitShape<typeof DiscoveryResponseSchema> = {
      versionInfo: String(++version),
      typeUrl: SECRET_TYPE_URL,
      nonce: n,
      resources: items.map(packSecret),
    };
    outstanding = subs.recordSent(items, n);
    ctx.send(create(DiscoveryResponseSchema, init), items);
  }

  function setNames(names: string[]): void {
    const wanted = new Set(names);
    for (const name of subs.names()) if (!wanted.has(name)) subs.remove(name);
    for (const name of wanted) subs.add(name);
  }

  return {
    onRequest(req) {
      if (subs.closed) return;
      checkTypeUrl(req.typeUrl, SECRET_TYPE_URL);
      checkNameCount(new Set(req.resourceNames).size);
      checkNames(req.resourceNames);
      if (req.responseNonce !== "") {
        if (!outstanding || req.responseNonce !== outstanding.nonce) return; // stale: superseded by a later response
        subs.settle(outstanding, req.errorDetail);
        outstanding = undefined;
      } else {
        // A fresh request (first on the stream): whatever was sent before does not count.
        outstanding = undefined;
        subs.sent.clear();
      }
      setNames(req.resourceNames);
      maybeSend();
    },
    names: () => subs.names(),
    close: () => subs.close(),
  };
}
