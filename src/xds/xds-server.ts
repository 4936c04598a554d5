// The ADS (SotW + delta) and CSDS gRPC server on one port, over src/net.
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { Registry } from "prom-client";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { ClientStatusDiscoveryService } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { startGrpcServer, type GrpcServerTls, type RunningGrpcServer } from "../net/index.js";
import type { SnapshotCache } from "./cache/snapshot-cache.js";
import { clientStatus } from "./server/csds.js";
import { deltaStream } from "./server/delta.js";
import { checkNodeIdentity, type PeerIdentityOf } from "./server/node-identity.js";
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
  /** Serve over TLS (with requestCert: mTLS, client certificates verified against tls.ca). */
  tls?: GrpcServerTls;
  /**
   * The verified SPIFFE ID of a call's client certificate. When set, an ADS stream
   * whose node (id, NAMESPACE / SERVICE_ACCOUNT / SPIFFE_ID metadata) is not that
   * identity ends with PERMISSION_DENIED.
   */
  peerIdentity?: PeerIdentityOf;
}

export interface RunningXdsServer extends RunningGrpcServer {
  /** Per node, per type: version sent, version ACKed, last NACK (for /debug/syncz). */
  syncStatus(): NodeSyncStatus[];
  readonly tracker: SyncTracker;
  /** New key and certificate for new connections (TLS servers only). */
  setTlsCertificate(tls: { key: string | Buffer; cert: string | Buffer }): void;
}

/** Registers ADS and CSDS on a connect router (for servers that host other services too). */
export function xdsRoutes(deps: StreamDeps & { cache: SnapshotCache; peerIdentity?: PeerIdentityOf }) {
  const { peerIdentity } = deps;
  const depsFor = (ctx: HandlerContext): StreamDeps =>
    peerIdentity ? { ...deps, checkNode: (node) => checkNodeIdentity(node, peerIdentity(ctx)) } : deps;
  return (router: ConnectRouter) => {
    router.service(AggregatedDiscoveryService, {
      streamAggregatedResources: (requests, ctx) => sotwStream(requests, ctx.signal, depsFor(ctx)),
      deltaAggregatedResources: (requests, ctx) => deltaStream(requests, ctx.signal, depsFor(ctx)),
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
  const deps = {
    watcher: options.cache,
    cache: options.cache,
    tracker,
    logger,
    ...(options.peerIdentity ? { peerIdentity: options.peerIdentity } : {}),
  };
  const server = await startGrpcServer({
    listen: options.listen,
    routes: xdsRoutes(deps),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.maxMessageBytes !== undefined ? { maxMessageBytes: options.maxMessageBytes } : {}),
  });
  logger.info({ address: server.address, tls: options.tls ? (options.tls.requestCert ? "mTLS" : "TLS") : "none" }, "xDS server listening");
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
    setTlsCertificate: (tls) => server.setTlsCertificate(tls),
  };
}
