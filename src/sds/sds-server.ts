// The SDS server: envoy.service.secret.v3.SecretDiscoveryService on a Unix socket.
// A thin gRPC layer: it decodes requests without Envoy's Node (lean-requests),
// authenticates each call from its token header (stream-authenticator), runs one
// protocol session per stream (sds-stream over sotw-session / delta-session and the
// secret cache), and keeps the books (sds-metrics, sds-debug-view). It knows nothing of
// certificates.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ConnectRouterOptions, type HandlerContext } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { Registry } from "prom-client";
import {
  DiscoveryResponseSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { startGrpcServer, type ConnectionLimits, type RunningGrpcServer } from "../net/index.js";
import { CaProviderError } from "./ca-provider.js";
import { SECRET_TYPE_URL, spiffeIdOf } from "../spiffe/index.js";
import type { TokenAuthenticator } from "./ca-types.js";
import { createDeltaSession } from "./delta-session.js";
import { LeanSecretDiscoveryService, toDeltaDiscoveryRequest, toDiscoveryRequest, type LeanRequest } from "./lean-requests.js";
import { createSdsDebugView, type SdsDebugSnapshot } from "./sds-debug-view.js";
import { createSdsMetrics } from "./sds-metrics.js";
import { createSdsStreamRunner, type SessionFactory } from "./sds-stream.js";
import type { SecretCache, SecretItem } from "./secret-cache.js";
import { packSecret } from "./secret-resource.js";
import { createStreamAuthenticator } from "./stream-authenticator.js";
import { MAX_STREAMS_PER_IDENTITY, checkNameCount, checkNames, issueFailureToConnect } from "./stream-subscriptions.js";
import { createSotwSession } from "./sotw-session.js";
import { claimSocket, prepareSocketPath } from "./uds-socket.js";

export type { SdsDebugSnapshot, SdsStreamDebug } from "./sds-debug-view.js";

export interface SdsServerOptions {
  socketPath: string;
  cache: SecretCache;
  authenticator: TokenAuthenticator;
  logger?: Logger;
  registry?: Registry;
  maxMessageBytes?: number;
  /** Messages a stream may have queued for a slow reader before it is ended (default 16). */
  maxQueuedMessages?: number;
  /** Open streams one SPIFFE ID may hold (default MAX_STREAMS_PER_IDENTITY). */
  maxStreamsPerIdentity?: number;
  /** Connection limits of the socket (default DEFAULT_CONNECTION_LIMITS of src/net). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** Clock for the unknown-name log rate limit and the debug view's timestamps (default Date.now). */
  now?: () => number;
}

export interface RunningSdsServer extends RunningGrpcServer {
  readonly socketPath: string;
  /** JSON-able state for /debug/sds. */
  debug(): SdsDebugSnapshot;
}

const SERVICE_OPTIONS: ConnectRouterOptions = {
  // Envoy is on the same node: compressing secrets for a Unix socket only burns CPU (gzip took
  // about a third of the time of a new stream). Compressed requests are still accepted.
  compressMinBytes: Number.MAX_SAFE_INTEGER,
  // Options given per service replace the server's protocol choice: keep it gRPC only.
  grpc: true,
  grpcWeb: false,
  connect: false,
};

export async function startSdsServer(options: SdsServerOptions): Promise<RunningSdsServer> {
  const { cache, socketPath } = options;
  const log = options.logger ?? pino({ level: "silent" });
  const metrics = createSdsMetrics(options.registry ?? new Registry());
  const auth = createStreamAuthenticator({ authenticator: options.authenticator, log, metrics });
  const view = createSdsDebugView({ log, metrics, ...(options.now ? { now: options.now } : {}) });
  const { runStream } = createSdsStreamRunner({
    cache,
    auth,
    view,
    metrics,
    log,
    queueLimit: options.maxQueuedMessages ?? 16,
    perIdentityLimit: options.maxStreamsPerIdentity ?? MAX_STREAMS_PER_IDENTITY,
  });

  // Requests are decoded without Envoy's Node (lean-requests.ts), then handed on as the generated messages.
  const sotwSession: SessionFactory<LeanRequest<DiscoveryRequest>, DiscoveryResponse> = (ctx, id) => {
    const session = createSotwSession(ctx, id);
    return { ...session, onRequest: (r) => session.onRequest(toDiscoveryRequest(r)) };
  };
  const deltaSession: SessionFactory<LeanRequest<DeltaDiscoveryRequest>, DeltaDiscoveryResponse> = (ctx, id) => {
    const session = createDeltaSession(ctx, id);
    return { ...session, onRequest: (r) => session.onRequest(toDeltaDiscoveryRequest(r)) };
  };

  function routes(router: ConnectRouter): void {
    router.service(LeanSecretDiscoveryService, {
      streamSecrets(requests: AsyncIterable<LeanRequest<DiscoveryRequest>>, hctx: HandlerContext) {
        return runStream("StreamSecrets", requests, hctx, sotwSession);
      },
      deltaSecrets(requests: AsyncIterable<LeanRequest<DeltaDiscoveryRequest>>, hctx: HandlerContext) {
        return runStream("DeltaSecrets", requests, hctx, deltaSession);
      },
      async fetchSecrets(lean: LeanRequest<DiscoveryRequest>, hctx: HandlerContext) {
        const req = toDiscoveryRequest(lean);
        const { caller, token } = await auth.authenticate(hctx.requestHeader, "FetchSecrets");
        if (req.typeUrl !== "" && req.typeUrl !== SECRET_TYPE_URL) {
          throw new ConnectError(`unsupported type URL "${req.typeUrl}"`, Code.InvalidArgument);
        }
        const spiffeId = spiffeIdOf(cache.trustDomain, caller);
        checkNameCount(new Set(req.resourceNames).size);
        checkNames(req.resourceNames);
        const items: SecretItem[] = [];
        for (const name of new Set(req.resourceNames)) {
          let item: SecretItem | undefined;
          try {
            item = await cache.fetch(caller, token, name, hctx.signal);
          } catch (err) {
            if (err instanceof CaProviderError) throw issueFailureToConnect(err);
            throw ConnectError.from(err);
          }
          if (item) items.push(item);
          else view.recordUnknownName(name, spiffeId, "fetch");
        }
        for (const it of items) metrics.pushes.inc({ kind: it.kind });
        return create(DiscoveryResponseSchema, {
          versionInfo: items.map((i) => i.version).join("."),
          typeUrl: SECRET_TYPE_URL,
          resources: items.map(packSecret),
        });
      },
    }, SERVICE_OPTIONS);
  }

  await prepareSocketPath(socketPath);
  const server = await startGrpcServer({
    routes,
    listen: { path: socketPath },
    maxMessageBytes: options.maxMessageBytes,
    ...(options.connectionLimits ? { limits: options.connectionLimits } : {}),
    onConnectionClosed: (reason) => metrics.connectionsClosed.inc({ reason }),
  });
  const owned = claimSocket(socketPath);
  log.info({ socket: socketPath }, "SDS server listening");

  let closing: Promise<void> | undefined;
  return {
    address: server.address,
    port: server.port,
    socketPath,
    sessionCount: () => server.sessionCount(),
    close(graceMs?: number) {
      closing ??= (async () => {
        try {
          await server.close(graceMs);
        } finally {
          owned.remove();
          log.info({ socket: socketPath }, "SDS server closed");
        }
      })();
      return closing;
    },
    debug: () => view.snapshot(cache.debug(), socketPath, auth.failures),
  };
}
