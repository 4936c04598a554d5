// DeltaSecrets (incremental) on one stream: subscribe/unsubscribe by name, resources
// sent with their content version, initial_resource_versions honoured (what the
// client already has is not resent), the same ACK gating and NACK memory as SotW.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  DeltaDiscoveryResponseSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SECRET_TYPE_URL } from "../spiffe/index.js";
import { packSecret } from "./secret-resource.js";
import { checkNameCount, checkNames, checkTypeUrl, createStreamSubscriptions, type OutstandingResponse, type SessionContext } from "./stream-subscriptions.js";

export interface DeltaSession {
  onRequest(request: DeltaDiscoveryRequest): void;
  names(): string[];
  close(): void;
}

export function createDeltaSession(ctx: SessionContext<DeltaDiscoveryResponse>, streamId: string): DeltaSession {
  const subs = createStreamSubscriptions(ctx, () => maybeSend());
  let outstanding: OutstandingResponse | undefined;
  let first = true;
  let version = 0;
  let nonce = 0;

  function maybeSend(): void {
    if (subs.closed || outstanding) return;
    // Incremental: only secrets whose version the client has not got (nor rejected).
    const items = subs.current().filter((it) => subs.sent.get(it.name) !== it.version && subs.nacked.get(it.name) !== it.version);
    if (items.length === 0) return;
    const n = `${streamId}-${++nonce}`;
    const init: MessageInitShape<typeof DeltaDiscoveryResponseSchema> = {
      systemVersionInfo: String(++version),
      typeUrl: SECRET_TYPE_URL,
      nonce: n,
      resources: items.map((it) => ({ name: it.name, version: it.version, resource: packSecret(it) })),
    };
    outstanding = subs.recordSent(items, n);
    ctx.send(create(DeltaDiscoveryResponseSchema, init), items);
  }

  return {
    onRequest(req) {
      if (subs.closed) return;
      checkTypeUrl(req.typeUrl, SECRET_TYPE_URL);
      // Every list a request carries is bounded, initial_resource_versions included.
      checkNameCount(req.resourceNamesSubscribe.length);
      checkNameCount(req.resourceNamesUnsubscribe.length);
      checkNames(req.resourceNamesSubscribe);
      checkNames(req.resourceNamesUnsubscribe);
      if (first) {
        first = false;
        const initial = Object.keys(req.initialResourceVersions);
        checkNameCount(initial.length);
        checkNames(initial);
        // A version longer than any this agent makes cannot match: not kept (it would only pin memory).
        for (const [name, v] of Object.entries(req.initialResourceVersions)) if (v.length <= 256) subs.sent.set(name, v);
      }
      if (req.responseNonce !== "" && outstanding && req.responseNonce === outstanding.nonce) {
        subs.settle(outstanding, req.errorDetail);
        outstanding = undefined;
      }
      for (const name of req.resourceNamesUnsubscribe) subs.remove(name);
      for (const name of req.resourceNamesSubscribe) {
        if (subs.has(name)) continue;
        checkNameCount(subs.size() + 1);
        subs.add(name);
      }
      maybeSend();
    },
    names: () => subs.names(),
    close: () => subs.close(),
  };
}
