// The raw limit for bench/load.bench.ts and bench/xds.bench.ts: connect-node ADS (TCP) and SDS (Unix socket)
// handlers with no authentication, no cache and no protocol state. Each stream's first
// request is answered with a fixed response; push() sends one more to every stream;
// later requests (ACKs) are read and ignored.
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { startGrpcServer, type RunningGrpcServer } from "../../src/net/index.js";

export interface BareServers {
  ads: RunningGrpcServer;
  sds: RunningGrpcServer;
  push(version: string): void;
  close(): Promise<void>;
}

export async function startBareServers(socketPath: string, resources: { ads: Any; secret: Any }): Promise<BareServers> {
  const streams = new Set<(version: string) => void>();
  async function* handler(requests: AsyncIterable<DiscoveryRequest>, ctx: HandlerContext): AsyncGenerator<DiscoveryResponse> {
    const pending: DiscoveryResponse[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    let nonce = 0;
    const answer = (typeUrl: string, version: string) => {
      pending.push(create(DiscoveryResponseSchema, { typeUrl, versionInfo: version, nonce: String(++nonce), resources: [typeUrl.endsWith("Secret") ? resources.secret : resources.ads] }));
      wake?.();
    };
    const types = new Set<string>();
    const push = (version: string) => {
      for (const t of types) if (t.endsWith("Secret") || t.endsWith("ClusterLoadAssignment")) answer(t, version);
    };
    streams.add(push);
    void (async () => {
      try {
        for await (const q of requests) {
          if (q.responseNonce === "") {
            types.add(q.typeUrl);
            answer(q.typeUrl, "0");
          }
        }
      } catch {
        /* stream gone */
      }
      ended = true;
      wake?.();
    })();
    ctx.signal.addEventListener("abort", () => wake?.(), { once: true });
    try {
      while (!ctx.signal.aborted) {
        const next = pending.shift();
        if (next) {
          yield next;
          continue;
        }
        if (ended) break;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      streams.delete(push);
    }
  }
  const ads = await startGrpcServer({
    listen: { host: "127.0.0.1", port: 0 },
    routes: (router) => router.service(AggregatedDiscoveryService, { streamAggregatedResources: handler, async *deltaAggregatedResources() {} }),
  });
  const sds = await startGrpcServer({
    listen: { path: socketPath },
    routes: (router) => router.service(SecretDiscoveryService, { streamSecrets: handler, async *deltaSecrets() {}, fetchSecrets: () => create(DiscoveryResponseSchema, {}) }),
  });
  return {
    ads,
    sds,
    push(version) {
      for (const p of streams) p(version);
    },
    async close() {
      await Promise.all([ads.close(1000), sds.close(1000)]);
    },
  };
}
