// The ADS (SotW + delta) and CSDS gRPC server on one port, over src/net.
import type { ConnectRouter } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { Registry } from "prom-client";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { ClientStatusDiscoveryService } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { startGrpcServer, type RunningGrpcServer } from "../net/index.js";
import type { SnapshotCache } from "./cache/snapshot-cache.js";
import { clientStatus } from "./server/csds.js";
import { deltaStream } from "./server/delta.js";
import { sotwStream, type StreamDeps } from "./server/sotw.js";
import { createSyncTracker, type NodeSyncStatus, type SyncTracker } from "./server/sync-tracker.js";

export interface XdsServerOptions {
  listen: { host: string; port: number } | { path: string };
  cache: SnapshotCache;
  logger?: Logger;
  registry?: Registry;
  maxMessageBytes?: number;
  /** Share one tracker between servers (default: a new one). */
  tracker?: SyncTracker;
}

export interface RunningXdsServer extends RunningGrpcServer {
  /** Per node, per type: version sent, version ACKed, last NACK (for /debug/syncz). */
  syncStatus(): NodeSyncStatus[];
  readonly tracker: SyncTracker;
}

/** Registers ADS and CSDS on a connect router (for servers that host other services too). */
export function xdsRoutes(deps: StreamDeps & { cache: SnapshotCache }) {
  return (router: ConnectRouter) => {
    router.service(AggregatedDiscoveryService, {
      streamAggregatedResources: (requests, ctx) => sotwStream(requests, ctx.signal, deps),
      deltaAggregatedResources: (requests, ctx) => deltaStream(requests, ctx.signal, deps),
    });
    router.service(ClientStatusDiscoveryService, {
      fetchClientStatus: (req) => clientStatus(deps.cache, deps.tracker, req),
      async *streamClientStatus(requests) {
        for await (const req of requests) yield clientStatus(deps.cache, deps.tracker, req);
      },
    });
  };
}

export async function startXdsServer(options: XdsServerOptions): Promise<RunningXdsServer> {
  const logger = options.logger ?? pino({ level: "silent" });
  const tracker = options.tracker ?? createSyncTracker(options.registry ?? new Registry());
  const deps = { watcher: options.cache, cache: options.cache, tracker, logger };
  const server = await startGrpcServer({
    listen: options.listen,
    routes: xdsRoutes(deps),
    ...(options.maxMessageBytes !== undefined ? { maxMessageBytes: options.maxMessageBytes } : {}),
  });
  logger.info({ address: server.address }, "xDS server listening");
  return {
    get address() {
      return server.address;
    },
    get port() {
      return server.port;
    },
    sessionCount: () => server.sessionCount(),
    close: (graceMs?: number) => server.close(graceMs),
    syncStatus: () => tracker.status(),
    tracker,
  };
}
