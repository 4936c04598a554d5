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
import type { SecretItem, SecretWatch } from "./secret-cache.js";
import { SECRET_TYPE_URL, packSecret } from "./secret-resource.js";
import { checkNameCount, checkTypeUrl, nackReport, subscribe, type SessionContext } from "./session-context.js";

export interface SotwSession {
  onRequest(request: DiscoveryRequest): void;
  /** Names this stream watches (debug). */
  names(): string[];
  close(): void;
}

export function createSotwSession(ctx: SessionContext<DiscoveryResponse>, streamId: string): SotwSession {
  /** name → its watch (undefined: unknown name, remembered so that it is reported once). */
  const subs = new Map<string, SecretWatch | undefined>();
  /** Versions the client last received, and the ones it rejected. */
  const sent = new Map<string, string>();
  const nacked = new Map<string, string>();
  let outstanding: { nonce: string; names: string[]; versions: string[] } | undefined;
  let version = 0;
  let nonce = 0;
  let closed = false;

  function pending(): SecretItem[] {
    const ready: SecretItem[] = [];
    let changed = false;
    for (const w of subs.values()) {
      const item = w?.current();
      if (!item || nacked.get(item.name) === item.version) continue;
      ready.push(item);
      if (sent.get(item.name) !== item.version) changed = true;
    }
    return changed ? ready : [];
  }

  function maybeSend(): void {
    if (closed || outstanding) return;
    const items = pending();
    if (items.length === 0) return;
    const n = `${streamId}-${++nonce}`;
    const init: MessageInitShape<typeof DiscoveryResponseSchema> = {
      versionInfo: String(++version),
      typeUrl: SECRET_TYPE_URL,
      nonce: n,
      resources: items.map(packSecret),
    };
    for (const it of items) sent.set(it.name, it.version);
    outstanding = { nonce: n, names: items.map((i) => i.name), versions: items.map((i) => i.version) };
    ctx.send(create(DiscoveryResponseSchema, init), items);
  }

  function setNames(names: string[]): void {
    const wanted = new Set(names);
    for (const [name, w] of subs) {
      if (wanted.has(name)) continue;
      w?.cancel();
      subs.delete(name);
      sent.delete(name);
      nacked.delete(name);
    }
    for (const name of wanted) {
      if (subs.has(name)) continue;
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
  }

  return {
    onRequest(req) {
      if (closed) return;
      checkTypeUrl(req.typeUrl, SECRET_TYPE_URL);
      checkNameCount(new Set(req.resourceNames).size);
      if (req.responseNonce !== "") {
        if (!outstanding || req.responseNonce !== outstanding.nonce) return; // stale: superseded by a later response
        if (req.errorDetail) {
          for (let i = 0; i < outstanding.names.length; i++) nacked.set(outstanding.names[i]!, outstanding.versions[i]!);
          ctx.onNack(nackReport(outstanding.names, outstanding.versions, req.errorDetail));
        }
        outstanding = undefined;
      } else {
        // A fresh request (first on the stream): whatever was sent before does not count.
        outstanding = undefined;
        sent.clear();
      }
      setNames(req.resourceNames);
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
