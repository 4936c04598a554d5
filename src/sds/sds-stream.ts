// One SDS bidi stream (StreamSecrets or DeltaSecrets) from its first request to its end:
// authenticate the call, hold one of the identity's stream slots (at most
// perIdentityLimit open streams per SPIFFE ID, else RESOURCE_EXHAUSTED), run the protocol
// session over a bounded outbox, and end on the client's close, an error, or the
// handler's abort (shutdown: UNAVAILABLE, so that Envoy reconnects at once).
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import { spiffeIdOf } from "../spiffe/index.js";
import { createOutbox } from "./outbox.js";
import type { SdsDebugView, SdsStreamDebug } from "./sds-debug-view.js";
import type { SdsMetrics } from "./sds-metrics.js";
import type { SecretCache } from "./secret-cache.js";
import type { StreamAuthenticator } from "./stream-authenticator.js";
import type { SessionContext } from "./stream-subscriptions.js";

export type SdsRpc = SdsStreamDebug["rpc"];

/** A protocol session on one stream (createSotwSession, createDeltaSession). */
export type SessionFactory<Req, Res> = (ctx: SessionContext<Res>, id: string) => { onRequest(r: Req): void; names(): string[]; close(): void };

export interface SdsStreamRunnerOptions {
  cache: SecretCache;
  auth: Pick<StreamAuthenticator, "authenticate">;
  view: SdsDebugView;
  metrics: Pick<SdsMetrics, "activeStreams" | "pushes" | "pushErrors" | "nacks" | "refusedStreams">;
  log: Logger;
  /** Messages a stream may have queued for a slow reader before it is ended. */
  queueLimit: number;
  /** Open streams one SPIFFE ID may hold. */
  perIdentityLimit: number;
}

export interface SdsStreamRunner {
  /** The handler's response generator for one stream. */
  runStream<Req, Res>(
    rpc: SdsRpc,
    requests: AsyncIterable<Req>,
    hctx: Pick<HandlerContext, "requestHeader" | "signal">,
    makeSession: SessionFactory<Req, Res>,
  ): AsyncGenerator<Res>;
}

export function createSdsStreamRunner(options: SdsStreamRunnerOptions): SdsStreamRunner {
  const { cache, auth, view, log, queueLimit, perIdentityLimit } = options;
  const { activeStreams, pushes, pushErrors, nacks, refusedStreams } = options.metrics;
  const streamsPerIdentity = new Map<string, number>();
  let streamSeq = 0;

  /** Takes one of the identity's stream slots; the returned function gives it back. */
  function holdSlot(spiffeId: string): () => void {
    const held = streamsPerIdentity.get(spiffeId) ?? 0;
    if (held >= perIdentityLimit) {
      refusedStreams.inc({ limit: "streams_per_identity" });
      throw new ConnectError(
        `too many open SDS streams for ${spiffeId} (${perIdentityLimit}, MAX_STREAMS_PER_IDENTITY): close some first`,
        Code.ResourceExhausted,
      );
    }
    streamsPerIdentity.set(spiffeId, held + 1);
    return () => {
      const left = (streamsPerIdentity.get(spiffeId) ?? 1) - 1;
      if (left > 0) streamsPerIdentity.set(spiffeId, left);
      else streamsPerIdentity.delete(spiffeId);
    };
  }

  async function* runStream<Req, Res>(
    rpc: SdsRpc,
    requests: AsyncIterable<Req>,
    hctx: Pick<HandlerContext, "requestHeader" | "signal">,
    makeSession: SessionFactory<Req, Res>,
  ): AsyncGenerator<Res> {
    const { caller, token } = await auth.authenticate(hctx.requestHeader, rpc);
    const id = `s${++streamSeq}`;
    const spiffeId = spiffeIdOf(cache.trustDomain, caller);
    const release = holdSlot(spiffeId);
    const slog = log.child({ stream: id, rpc, spiffeId });
    const outbox = createOutbox<Res>(queueLimit, (error) => {
      // The client does not read: counted like any stream the server ends with an error.
      pushErrors.inc({ code: Code[error.code] });
      slog.warn({ code: Code[error.code], queued: queueLimit }, "ending stream: outgoing queue full");
    });
    const info = view.newStream(id, rpc, spiffeId);
    const ctx: SessionContext<Res> = {
      cache,
      caller,
      token,
      send(response, items) {
        info.pushes++;
        for (const it of items) pushes.inc({ kind: it.kind });
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
        view.recordNack(info, report);
        slog.warn({ names: report.names, versions: report.versions, error: report.message }, "Envoy rejected secrets (NACK)");
      },
      onUnknownName: (name) => view.recordUnknownName(name, spiffeId, id),
    };
    const session = makeSession(ctx, id);
    info.session = session;
    view.opened(info);
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
      view.closed(id);
      release();
      activeStreams.dec({ rpc });
      slog.info("SDS stream closed");
    }
  }

  return { runStream };
}
