// The SDS server: envoy.service.secret.v3.SecretDiscoveryService on a Unix socket.
// A thin gRPC layer: it authenticates each call from its token header, runs one
// protocol session per stream (sotw-session / delta-session) over the secret cache,
// and keeps the books (metrics, debug). It knows nothing of certificates.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ConnectRouterOptions, type HandlerContext } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { Counter, Gauge, Registry } from "prom-client";
import {
  DiscoveryResponseSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { startGrpcServer, type ConnectionLimits, type RunningGrpcServer } from "../net/index.js";
import { CaProviderError } from "./ca-provider.js";
import { SDS_TOKEN_HEADER, SECRET_TYPE_URL, spiffeIdOf } from "../spiffe/index.js";
import { AuthenticationError, VerifierUnavailableError, unverifiedClaims, type AuthenticatedCaller, type TokenAuthenticator } from "./ca-types.js";
import { createDeltaSession } from "./delta-session.js";
import { createOutbox } from "./outbox.js";
import type { SecretCache, SecretCacheDebug, SecretItem } from "./secret-cache.js";
import { packSecret } from "./secret-resource.js";
import {
  MAX_STREAMS_PER_IDENTITY,
  MAX_UNKNOWN_NAME_SAMPLE,
  UNKNOWN_NAME_LOGS_PER_WINDOW,
  UNKNOWN_NAME_LOG_WINDOW_MS,
  checkNameCount,
  checkNames,
  issueFailureToConnect,
  truncateName,
  type NackReport,
  type SessionContext,
} from "./stream-subscriptions.js";
import { createSotwSession } from "./sotw-session.js";
import { claimSocket, prepareSocketPath } from "./uds-socket.js";
import { extractWorkloadToken } from "./workload-token.js";

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
  /** Clock for the unknown-name log rate limit (default Date.now). */
  now?: () => number;
}

export interface SdsStreamDebug {
  id: string;
  rpc: "StreamSecrets" | "DeltaSecrets";
  spiffeId: string;
  names: string[];
  openedAt: string;
  pushes: number;
  lastNack: (NackReport & { at: string }) | undefined;
}

export interface SdsDebugSnapshot {
  socket: string;
  trustDomain: string;
  rootFingerprint: string | undefined;
  identities: Array<SecretCacheDebug["identities"][number] & { streams: number; lastNack: (NackReport & { at: string }) | undefined }>;
  streams: SdsStreamDebug[];
  /** A bounded sample (MAX_UNKNOWN_NAME_SAMPLE names, each truncated), not every name ever asked. */
  unknownNames: Array<{ name: string; count: number; lastSpiffeId: string; lastSeen: string }>;
  unknownNamesTotal: number;
  authFailures: number;
}

export interface RunningSdsServer extends RunningGrpcServer {
  readonly socketPath: string;
  /** JSON-able state for /debug/sds. */
  debug(): SdsDebugSnapshot;
}

const MAX_NACK_RECORDS = 4096;

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
  const { cache, authenticator, socketPath } = options;
  const log = options.logger ?? pino({ level: "silent" });
  const registry = options.registry ?? new Registry();
  const queueLimit = options.maxQueuedMessages ?? 16;
  const perIdentityLimit = options.maxStreamsPerIdentity ?? MAX_STREAMS_PER_IDENTITY;
  const now = options.now ?? Date.now;

  const activeStreams = new Gauge({
    name: "meshkey_sds_active_streams",
    help: "Open SDS streams",
    labelNames: ["rpc"] as const,
    registers: [registry],
  });
  const pushes = new Counter({
    name: "meshkey_sds_pushes_total",
    help: "Secrets sent to Envoy, by kind",
    labelNames: ["kind"] as const,
    registers: [registry],
  });
  const pushErrors = new Counter({
    name: "meshkey_sds_push_errors_total",
    help: "Streams ended by the server with an error, by status",
    labelNames: ["code"] as const,
    registers: [registry],
  });
  const nacks = new Counter({
    name: "meshkey_sds_nacks_total",
    help: "Responses rejected by Envoy (requests carrying error_detail)",
    registers: [registry],
  });
  const unknownNamesTotal = new Counter({
    name: "meshkey_sds_unknown_names_total",
    help: "Requested secret names this agent does not serve",
    registers: [registry],
  });
  const refusedStreams = new Counter({
    name: "meshkey_sds_streams_refused_total",
    help: "SDS streams refused at a limit, by limit",
    labelNames: ["limit"] as const,
    registers: [registry],
  });
  const connectionsClosed = new Counter({
    name: "meshkey_sds_connections_closed_total",
    help: "SDS socket connections closed by the server, by reason (max_connections, idle, ping_timeout)",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const authFailures = new Counter({
    name: "meshkey_sds_auth_failures_total",
    help: "SDS calls refused for a missing or invalid token",
    labelNames: ["reason"] as const,
    registers: [registry],
  });

  const streams = new Map<string, SdsStreamDebug & { session?: { names(): string[] } }>();
  const lastNackBySpiffeId = new Map<string, NackReport & { at: string }>();
  const unknownNames = new Map<string, { name: string; count: number; lastSpiffeId: string; lastSeen: string }>();
  const streamsPerIdentity = new Map<string, number>();
  // Every series a reader may rate() exists from the start, at 0.
  for (const kind of ["tlsCertificate", "validationContext"]) pushes.inc({ kind }, 0);
  for (const reason of ["missing", "invalid", "error"]) authFailures.inc({ reason }, 0);
  for (const reason of ["max_connections", "idle", "ping_timeout"]) connectionsClosed.inc({ reason }, 0);
  refusedStreams.inc({ limit: "streams_per_identity" }, 0);
  let authFailureCount = 0;
  let unknownNameCount = 0;
  let streamSeq = 0;
  // "unknown secret name" warnings: at most UNKNOWN_NAME_LOGS_PER_WINDOW per window, the rest counted.
  let logWindowStart = -Infinity;
  let logsInWindow = 0;
  let suppressedLogs = 0;

  /**
   * Who was refused and what was expected, for the log. The caller is named by the claims its
   * token says it carries (unverified). Its uid/pid on the socket would name it better, but Node
   * exposes no SO_PEERCRED; the node id comes in the first request, which a refused stream never reads.
   */
  const refusal = (token: string | undefined) => ({
    peer: "unix socket (uid/pid unknown: Node exposes no SO_PEERCRED)",
    ...(token !== undefined ? { presented: unverifiedClaims(token) ?? "(not a JWT)" } : {}),
    ...(authenticator.expects ? { expected: authenticator.expects() } : {}),
  });

  async function authenticate(headers: Headers, rpc: string): Promise<{ caller: AuthenticatedCaller; token: string }> {
    const token = extractWorkloadToken(headers);
    if (token === undefined) {
      authFailures.inc({ reason: "missing" });
      authFailureCount++;
      log.warn({ rpc, ...refusal(undefined) }, "SDS call without a token");
      throw new ConnectError(
        `missing workload token: send it in ${SDS_TOKEN_HEADER} or authorization: Bearer`,
        Code.Unauthenticated,
      );
    }
    try {
      return { caller: await authenticator.authenticate(token), token };
    } catch (err) {
      authFailureCount++;
      if (err instanceof AuthenticationError) {
        authFailures.inc({ reason: "invalid" });
        log.warn({ rpc, err: err.message, ...refusal(token) }, "SDS call with an invalid token");
        throw new ConnectError(`invalid workload token: ${err.message}`, Code.Unauthenticated);
      }
      authFailures.inc({ reason: "error" });
      if (err instanceof VerifierUnavailableError) {
        log.warn({ rpc, err: err.message }, "token verifier unavailable: the stream is answered UNAVAILABLE");
        throw new ConnectError(`token verifier unavailable, retry later: ${err.publicMessage}`, Code.Unavailable);
      }
      log.error({ rpc, err: (err as Error).message }, "token verification failed");
      throw new ConnectError("token verification failed inside the node agent", Code.Internal);
    }
  }

  function recordUnknown(fullName: string, spiffeId: string, streamId: string): void {
    unknownNamesTotal.inc();
    unknownNameCount++;
    const name = truncateName(fullName);
    const t = now();
    if (t - logWindowStart >= UNKNOWN_NAME_LOG_WINDOW_MS) {
      logWindowStart = t;
      logsInWindow = 0;
    }
    if (logsInWindow < UNKNOWN_NAME_LOGS_PER_WINDOW) {
      logsInWindow++;
      const suppressed = suppressedLogs;
      suppressedLogs = 0;
      log.warn({ stream: streamId, spiffeId, name, ...(suppressed > 0 ? { suppressed } : {}) }, "unknown secret name requested: not answered");
    } else suppressedLogs++;
    const u = unknownNames.get(name);
    if (u) {
      u.count++;
      u.lastSpiffeId = spiffeId;
      u.lastSeen = new Date().toISOString();
      return;
    }
    if (unknownNames.size >= MAX_UNKNOWN_NAME_SAMPLE) unknownNames.delete(unknownNames.keys().next().value!);
    unknownNames.set(name, { name, count: 1, lastSpiffeId: spiffeId, lastSeen: new Date().toISOString() });
  }

  function countPush(items: readonly SecretItem[], stream: SdsStreamDebug): void {
    stream.pushes++;
    for (const it of items) pushes.inc({ kind: it.kind });
  }

  /** Runs one bidi stream: session over an outbox, ending on the client's close or abort. */
  async function* runStream<Req, Res>(
    rpc: "StreamSecrets" | "DeltaSecrets",
    requests: AsyncIterable<Req>,
    hctx: HandlerContext,
    makeSession: (ctx: SessionContext<Res>, id: string) => { onRequest(r: Req): void; names(): string[]; close(): void },
  ): AsyncGenerator<Res> {
    const { caller, token } = await authenticate(hctx.requestHeader, rpc);
    const id = `s${++streamSeq}`;
    const spiffeId = spiffeIdOf(cache.trustDomain, caller);
    const held = streamsPerIdentity.get(spiffeId) ?? 0;
    if (held >= perIdentityLimit) {
      refusedStreams.inc({ limit: "streams_per_identity" });
      throw new ConnectError(
        `too many open SDS streams for ${spiffeId} (${perIdentityLimit}, MAX_STREAMS_PER_IDENTITY): close some first`,
        Code.ResourceExhausted,
      );
    }
    streamsPerIdentity.set(spiffeId, held + 1);
    const slog = log.child({ stream: id, rpc, spiffeId });
    const outbox = createOutbox<Res>(queueLimit, (error) => {
      // The client does not read: counted like any stream the server ends with an error.
      pushErrors.inc({ code: Code[error.code] });
      slog.warn({ code: Code[error.code], queued: queueLimit }, "ending stream: outgoing queue full");
    });
    const info: SdsStreamDebug & { session?: { names(): string[] } } = {
      id,
      rpc,
      spiffeId,
      names: [],
      openedAt: new Date().toISOString(),
      pushes: 0,
      lastNack: undefined,
    };
    const ctx: SessionContext<Res> = {
      cache,
      caller,
      token,
      send(response, items) {
        countPush(items, info);
        slog.debug({ names: items.map((i) => i.name), versions: items.map((i) => i.version) }, "pushing secrets");
        outbox.push(response);
      },
      end(error) {
        pushErrors.inc({ code: Code[error.code] });
        slog.info({ code: Code[error.code], reason: error.rawMessage }, "ending stream");
        outbox.end(error);
      },
      onNack(report) {
        nacks.inc();
        const at = { ...report, at: new Date().toISOString() };
        info.lastNack = at;
        lastNackBySpiffeId.delete(spiffeId);
        if (lastNackBySpiffeId.size >= MAX_NACK_RECORDS) lastNackBySpiffeId.delete(lastNackBySpiffeId.keys().next().value!);
        lastNackBySpiffeId.set(spiffeId, at);
        slog.warn({ names: report.names, versions: report.versions, error: report.message }, "Envoy rejected secrets (NACK)");
      },
      onUnknownName: (name) => recordUnknown(name, spiffeId, id),
    };
    const session = makeSession(ctx, id);
    info.session = session;
    streams.set(id, info);
    activeStreams.inc({ rpc });
    slog.info("SDS stream opened");
    // Shutdown (or a broken stream): end with UNAVAILABLE so that Envoy reconnects at once.
    const onAbort = () => {
      const reason: unknown = hctx.signal.reason;
      outbox.end(reason instanceof ConnectError ? reason : new ConnectError("SDS server shutting down, reconnect", Code.Unavailable));
    };
    hctx.signal.addEventListener("abort", onAbort, { once: true });
    void (async () => {
      try {
        for await (const req of requests) session.onRequest(req);
        outbox.end();
      } catch (err) {
        outbox.end(ConnectError.from(err));
      }
    })();
    try {
      yield* outbox;
    } finally {
      hctx.signal.removeEventListener("abort", onAbort);
      session.close();
      streams.delete(id);
      const left = (streamsPerIdentity.get(spiffeId) ?? 1) - 1;
      if (left > 0) streamsPerIdentity.set(spiffeId, left);
      else streamsPerIdentity.delete(spiffeId);
      activeStreams.dec({ rpc });
      slog.info("SDS stream closed");
    }
  }

  function routes(router: ConnectRouter): void {
    router.service(SecretDiscoveryService, {
      streamSecrets(requests: AsyncIterable<DiscoveryRequest>, hctx: HandlerContext) {
        return runStream<DiscoveryRequest, DiscoveryResponse>("StreamSecrets", requests, hctx, createSotwSession);
      },
      deltaSecrets(requests: AsyncIterable<DeltaDiscoveryRequest>, hctx: HandlerContext) {
        return runStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>("DeltaSecrets", requests, hctx, createDeltaSession);
      },
      async fetchSecrets(req: DiscoveryRequest, hctx: HandlerContext) {
        const { caller, token } = await authenticate(hctx.requestHeader, "FetchSecrets");
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
          else recordUnknown(name, spiffeId, "fetch");
        }
        for (const it of items) pushes.inc({ kind: it.kind });
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
    onConnectionClosed: (reason) => connectionsClosed.inc({ reason }),
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
    debug() {
      const c = cache.debug();
      const perId = new Map<string, number>();
      for (const s of streams.values()) perId.set(s.spiffeId, (perId.get(s.spiffeId) ?? 0) + 1);
      return {
        socket: socketPath,
        trustDomain: c.trustDomain,
        rootFingerprint: c.rootFingerprint,
        identities: c.identities.map((i) => ({
          ...i,
          streams: perId.get(i.spiffeId) ?? 0,
          lastNack: lastNackBySpiffeId.get(i.spiffeId),
        })),
        streams: [...streams.values()].map(({ session, ...s }) => ({ ...s, names: (session?.names() ?? []).map(truncateName) })),
        unknownNames: [...unknownNames.values()],
        unknownNamesTotal: unknownNameCount,
        authFailures: authFailureCount,
      };
    },
  };
}
