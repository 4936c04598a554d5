// One HTTP/2 gRPC server (connect-node, gRPC protocol only) on TCP, TLS or a
// Unix socket, with the shutdown sequence every meshkey server needs: abort the
// handlers' signals, stop accepting, close every tracked HTTP/2 session, and
// destroy what is still open after a grace period. Without closing sessions an
// idle client keeps the process alive.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import type { X509Certificate } from "node:crypto";
import { createContextKey, createContextValues, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createShutdownSignal } from "./shutdown-signal.js";

/** Largest gRPC message accepted or sent by default (4 MiB, gRPC's own default). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Connection limits every meshkey gRPC port has (one place for them). Generous: the
 * load bench holds 10,000 ADS streams over 300 connections and 5,000 SDS streams;
 * one Envoy opens 1 ADS connection and a few SDS streams.
 */
export const DEFAULT_CONNECTION_LIMITS = {
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised on every connection. */
  maxConcurrentStreams: 1_000,
  /** Open connections per port; more are closed at accept. */
  maxConnections: 4_096,
  /** A connection with no open stream for this long is sent GOAWAY and closed. */
  idleTimeoutMs: 5 * 60_000,
  /** HTTP/2 PING interval; a peer that does not answer within pingTimeoutMs is dropped. */
  pingIntervalMs: 60_000,
  pingTimeoutMs: 20_000,
} as const;

export type ConnectionLimits = { -readonly [K in keyof typeof DEFAULT_CONNECTION_LIMITS]: number };

/** Why the server closed a connection on its own. */
export type ConnectionCloseReason = "max_connections" | "idle" | "ping_timeout";

/** host, host:port or [v6]:port with the characters a URL's authority may hold unescaped. */
const USABLE_AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::\d{1,5})?$/;

/**
 * The client certificate of the call's connection, as the TLS handshake verified it
 * against `tls.ca` (TLS servers with requestCert only; undefined otherwise).
 */
const PEER_CERTIFICATE = createContextKey<X509Certificate | undefined>(undefined, { description: "TLS peer certificate" });

/** The verified client certificate of the connection a call came on (TLS servers with requestCert), else undefined. */
export function peerCertificateOf(ctx: HandlerContext): X509Certificate | undefined {
  return ctx.values.get(PEER_CERTIFICATE);
}

export type ListenAddress = { host: string; port: number } | { path: string };

export interface GrpcServerTls {
  key: string | Buffer;
  cert: string | Buffer;
  /** Trust anchors for client certificates (only with requestCert). */
  ca?: string | Buffer | Array<string | Buffer>;
  requestCert?: boolean;
}

export interface GrpcServerOptions {
  routes: (router: ConnectRouter) => void;
  listen: ListenAddress;
  tls?: GrpcServerTls;
  /** Max size of one message, both directions. */
  maxMessageBytes?: number;
  /** Overrides of DEFAULT_CONNECTION_LIMITS. */
  limits?: Partial<ConnectionLimits>;
  /** Told each time the server closes a connection on its own (for a metric). */
  onConnectionClosed?: (reason: ConnectionCloseReason) => void;
}

export interface RunningGrpcServer {
  /** "127.0.0.1:15010" or "unix:/path". */
  readonly address: string;
  /** The TCP port actually bound (0 for Unix sockets). */
  readonly port: number;
  /** Number of open HTTP/2 sessions (connections). */
  sessionCount(): number;
  /** Stops accepting, ends streams (handlers see their signal abort), closes sessions. */
  close(graceMs?: number): Promise<void>;
}

/** What startGrpcServer returns: a running server that can also change its TLS certificate. */
export interface StartedGrpcServer extends RunningGrpcServer {
  /** Serves a new key and certificate on new TLS connections (TLS servers only). */
  setTlsCertificate(tls: { key: string | Buffer; cert: string | Buffer }): void;
}

function peerCertificateOfSession(session: http2.ServerHttp2Session): X509Certificate | undefined {
  try {
    const socket = session.socket as TLSSocket;
    // Only a certificate the handshake accepted counts (rejectUnauthorized is on with requestCert).
    if (!socket.authorized) return undefined;
    return socket.getPeerX509Certificate() ?? undefined;
  } catch {
    return undefined; // the connection is already gone
  }
}

export async function startGrpcServer(options: GrpcServerOptions): Promise<StartedGrpcServer> {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const limits: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };
  const closedByServer = (reason: ConnectionCloseReason) => options.onConnectionClosed?.(reason);
  const settings: http2.Settings = { maxConcurrentStreams: limits.maxConcurrentStreams };

  // One connect adapter for every connection, its shutdown signal O(1) per call (shutdown-signal.ts).
  const shutdown = createShutdownSignal();
  // The handshake is over when the session exists, and a connection keeps its peer:
  // the verified client certificate is read once per session.
  const peers = new WeakMap<http2.ServerHttp2Session, X509Certificate | undefined>();
  const peerOf = (session: http2.ServerHttp2Session) => {
    if (!peers.has(session)) peers.set(session, peerCertificateOfSession(session));
    return peers.get(session);
  };
  const adapter = connectNodeAdapter({
    routes: options.routes,
    grpc: true,
    connect: false,
    grpcWeb: false,
    readMaxBytes: maxBytes,
    writeMaxBytes: maxBytes,
    shutdownSignal: shutdown.signal,
    ...(options.tls?.requestCert
      ? { contextValues: (req) => createContextValues().set(PEER_CERTIFICATE, peerOf((req as http2.Http2ServerRequest).stream.session as http2.ServerHttp2Session)) }
      : {}),
  });
  const handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    // Envoy's google_grpc client on a Unix socket sends the percent-encoded socket
    // path as :authority ("tmp%2Fsds%2Fuds_path"); connect builds a URL from it and
    // throws. The authority means nothing to these servers, so an unusable one is
    // replaced rather than allowed to fail the call (or, uncaught, the process).
    const authority = req.headers[":authority"];
    if (typeof authority !== "string" || !USABLE_AUTHORITY.test(authority)) req.headers[":authority"] = "localhost";
    try {
      adapter(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(400).end();
      else req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  };

  const server: http2.Http2Server | http2.Http2SecureServer = options.tls
    ? http2.createSecureServer(
        {
          key: options.tls.key,
          cert: options.tls.cert,
          ca: options.tls.ca,
          requestCert: options.tls.requestCert ?? false,
          rejectUnauthorized: options.tls.requestCert ?? false,
          allowHTTP1: false,
          minVersion: "TLSv1.2",
          settings,
        },
        handler,
      )
    : http2.createServer({ settings }, handler);
  // Above the cap, net.Server closes the new socket at accept and emits "drop".
  server.maxConnections = limits.maxConnections;
  server.on("drop", () => closedByServer("max_connections"));

  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
    // A peer that breaks the connection must not crash the process.
    s.on("error", () => {});
    watchSession(s);
  });

  // Idle connections (no open stream) get GOAWAY after idleTimeoutMs; a peer that
  // stops answering PINGs is dropped, so neither holds a file descriptor forever.
  const watchSession = (s: http2.ServerHttp2Session) => {
    let open = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = () => {
      idleTimer = setTimeout(() => {
        if (open > 0 || s.closed || s.destroyed) return;
        closedByServer("idle");
        s.close(); // GOAWAY: the client reconnects when it next needs a stream
        const t = setTimeout(() => s.destroy(), 1_000);
        t.unref();
      }, limits.idleTimeoutMs);
      idleTimer.unref();
    };
    armIdle();
    s.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      if (idleTimer) idleTimer = void clearTimeout(idleTimer);
      stream.once("close", () => {
        open--;
        if (open === 0 && !s.closed && !s.destroyed) armIdle();
      });
    });
    let awaitingPong = false;
    const pinger = setInterval(() => {
      if (s.closed || s.destroyed) return;
      if (awaitingPong) return;
      awaitingPong = true;
      const deadline = setTimeout(() => {
        closedByServer("ping_timeout");
        s.destroy();
      }, limits.pingTimeoutMs);
      deadline.unref();
      try {
        s.ping((err) => {
          awaitingPong = false;
          clearTimeout(deadline);
          if (err && !s.destroyed) s.destroy();
        });
      } catch {
        clearTimeout(deadline);
        s.destroy();
      }
    }, limits.pingIntervalMs);
    pinger.unref();
    s.once("close", () => {
      clearInterval(pinger);
      if (idleTimer) clearTimeout(idleTimer);
    });
  };
  server.on("error", () => {});

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    const done = () => {
      server.off("error", onError);
      resolve();
    };
    if ("path" in options.listen) server.listen(options.listen.path, done);
    else server.listen(options.listen.port, options.listen.host, done);
  });

  const addr = server.address();
  const port = typeof addr === "object" && addr !== null ? (addr as AddressInfo).port : 0;
  const address =
    "path" in options.listen
      ? `unix:${options.listen.path}`
      : `${options.listen.host.includes(":") ? `[${options.listen.host}]` : options.listen.host}:${port}`;

  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    sessionCount: () => sessions.size,
    setTlsCertificate(tls) {
      if (!options.tls) throw new Error(`${address} is not a TLS server`);
      (server as http2.Http2SecureServer).setSecureContext({ ...options.tls, key: tls.key, cert: tls.cert });
    },
    close(graceMs = 2_000) {
      closing ??= (async () => {
        shutdown.abort();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sessions) s.close();
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, graceMs);
        timer.unref();
        await closed;
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}
