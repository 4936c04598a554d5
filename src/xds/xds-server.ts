// The ADS (SotW + delta) and CSDS gRPC server on one port, over src/net.
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { Counter, Registry } from "prom-client";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { ClientStatusDiscoveryService } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { startGrpcServer, type ConnectionLimits, type GrpcServerTls, type RunningGrpcServer } from "../net/index.js";
import type { SnapshotCache } from "./cache/snapshot-cache.js";
import { clientStatus } from "./server/csds.js";
import { deltaStream } from "./server/delta.js";
import { checkNodeIdentity, type PeerIdentityOf } from "./server/node-identity.js";
import { sotwStream, type StreamDeps } from "./server/sotw.js";
import { createNameInterner } from "./server/name-interner.js";
import { createPushThrottle } from "./server/push-throttle.js";
import { createStreamDrain } from "./server/stream-drain.js";
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
  /** Connection limits of the port (default DEFAULT_CONNECTION_LIMITS of src/net). */
  connectionLimits?: Partial<ConnectionLimits>;
}

export interface RunningXdsServer extends RunningGrpcServer {
  /** Per node, per type: version sent, version ACKed, last NACK (for /debug/syncz). */
  syncStatus(): NodeSyncStatus[];
  readonly tracker: SyncTracker;
  /** New key and certificate for new connections (TLS servers only). */
  setTlsCertificate(tls: { key: string | Buffer; cert: string | Buffer }): void;
  /**
   * Waits (at most timeoutMs) until no stream has a push in flight: nothing queued and
   * every response ACKed or NACKed. Call before close(), so that a push is never cut in
   * half. Resolves false if the deadline came first.
   */
  settle(timeoutMs: number): Promise<boolean>;
  /** Streams that still have a push in flight. */
  unsettledStreams(): number;
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
  const drain = createStreamDrain();
  const deps = {
    drain,
    intern: createNameInterner(),
    throttle: createPushThrottle(),
    watcher: options.cache,
    cache: options.cache,
    tracker,
    logger,
    ...(options.peerIdentity ? { peerIdentity: options.peerIdentity } : {}),
  };
  // The plaintext and mTLS ADS servers share one registry (and this counter).
  const registry = options.registry;
  const closedName = "meshkey_xds_connections_closed_total";
  const connectionsClosed = registry
    ? ((registry.getSingleMetric(closedName) as Counter<"reason"> | undefined) ??
      new Counter({
        name: closedName,
        help: "ADS connections closed by the server, by reason (max_connections, idle, ping_timeout)",
        labelNames: ["reason"] as const,
        registers: [registry],
      }))
    : undefined;
  for (const reason of ["max_connections", "idle", "ping_timeout"] as const) connectionsClosed?.inc({ reason }, 0);
  const server = await startGrpcServer({
    listen: options.listen,
    ...(options.connectionLimits ? { limits: options.connectionLimits } : {}),
    onConnectionClosed: (reason) => connectionsClosed?.inc({ reason }),
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
    settle: (timeoutMs) => drain.settle(timeoutMs),
    unsettledStreams: () => drain.unsettled(),
  };
}
