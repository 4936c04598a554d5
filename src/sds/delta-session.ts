// DeltaSecrets (incremental) on one stream: subscribe/unsubscribe by name, resources
// sent with their content version, initial_resource_versions honoured (what the
// client already has is not resent), the same ACK gating and NACK memory as SotW.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  DeltaDiscoveryResponseSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import type { SecretItem, SecretWatch } from "./secret-cache.js";
import { SECRET_TYPE_URL, packSecret } from "./secret-resource.js";
import { checkNameCount, checkTypeUrl, nackReport, subscribe, type SessionContext } from "./session-context.js";

export interface DeltaSession {
  onRequest(request: DeltaDiscoveryRequest): void;
  names(): string[];
  close(): void;
}

export function createDeltaSession(ctx: SessionContext<DeltaDiscoveryResponse>, streamId: string): DeltaSession {
  const subs = new Map<string, SecretWatch | undefined>();
  const sent = new Map<string, string>();
  const nacked = new Map<string, string>();
  let outstanding: { nonce: string; names: string[]; versions: string[] } | undefined;
  let first = true;
  let version = 0;
  let nonce = 0;
  let closed = false;

  function maybeSend(): void {
    if (closed || outstanding) return;
    const items: SecretItem[] = [];
    for (const w of subs.values()) {
      const item = w?.current();
      if (!item || sent.get(item.name) === item.version || nacked.get(item.name) === item.version) continue;
      items.push(item);
    }
    if (items.length === 0) return;
    const n = `${streamId}-${++nonce}`;
    const init: MessageInitShape<typeof DeltaDiscoveryResponseSchema> = {
      systemVersionInfo: String(++version),
      typeUrl: SECRET_TYPE_URL,
      nonce: n,
      resources: items.map((it) => ({ name: it.name, version: it.version, resource: packSecret(it) })),
    };
    for (const it of items) sent.set(it.name, it.version);
    outstanding = { nonce: n, names: items.map((i) => i.name), versions: items.map((i) => i.version) };
    ctx.send(create(DeltaDiscoveryResponseSchema, init), items);
  }

  return {
    onRequest(req) {
      if (closed) return;
      checkTypeUrl(req.typeUrl, SECRET_TYPE_URL);
      if (first) {
        first = false;
        for (const [name, v] of Object.entries(req.initialResourceVersions)) sent.set(name, v);
      }
      if (req.responseNonce !== "" && outstanding && req.responseNonce === outstanding.nonce) {
        if (req.errorDetail) {
          for (let i = 0; i < outstanding.names.length; i++) nacked.set(outstanding.names[i]!, outstanding.versions[i]!);
          ctx.onNack(nackReport(outstanding.names, outstanding.versions, req.errorDetail));
        }
        outstanding = undefined;
      }
      for (const name of req.resourceNamesUnsubscribe) {
        subs.get(name)?.cancel();
        subs.delete(name);
        sent.delete(name);
        nacked.delete(name);
      }
      for (const name of req.resourceNamesSubscribe) {
        if (subs.has(name)) continue;
        checkNameCount(subs.size + 1);
        subs.set(name, undefined);
        const w = subscribe(ctx, name, (item) => {
          if (item.name === name && sent.get(name) !== item.version) maybeSend();
        });
        if (closed) {
          w?.cancel();
          return;
        }
        subs.set(name, w);
      }
      maybeSend();
    },
    names: () => [...subs.keys()],
    close() {
      closed = true;
      for (const w of subs.values()) w?.cancel();
      subs.clear();
    },
  };
}
