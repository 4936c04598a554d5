// The raw limit for bench/xds.bench.ts: a connect-node ADS handler with no cache and
// no protocol state. It answers each stream's first CDS and EDS request, pushes one
// EDS response to every stream on push(), and reads (ignores) ACKs.
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { DiscoveryResponseSchema, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { startGrpcServer, type RunningGrpcServer } from "../../src/net/index.js";

export interface BareAdsServer {
  server: RunningGrpcServer;
  push(version: string): void;
}

export async function startBareAdsServer(resource: Any): Promise<BareAdsServer> {
  const streams = new Set<(r: DiscoveryResponse) => void>();
  const server = await startGrpcServer({
    listen: { host: "127.0.0.1", port: 0 },
    routes: (router) =>
      router.service(AggregatedDiscoveryService, {
        async *streamAggregatedResources(requests, ctx) {
          const pending: DiscoveryResponse[] = [];
          let wake: (() => void) | undefined;
          let ended = false;
          const put = (r: DiscoveryResponse) => (pending.push(r), wake?.());
          streams.add(put);
          let nonce = 0;
          void (async () => {
            try {
              for await (const q of requests) {
                if (q.responseNonce === "") put(create(DiscoveryResponseSchema, { typeUrl: q.typeUrl, versionInfo: "0", nonce: String(++nonce), resources: [resource] }));
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
            streams.delete(put);
          }
        },
        async *deltaAggregatedResources() {},
      }),
  });
  return {
    server,
    push(version) {
      for (const put of streams) {
        put(create(DiscoveryResponseSchema, { typeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", versionInfo: version, nonce: version, resources: [resource] }));
      }
    },
  };
}
