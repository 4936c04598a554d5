// Connection limits of the shared HTTP/2 gRPC server: the advertised stream cap, the
// connection cap per port and GOAWAY for idle connections. Servers on 127.0.0.1:0.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as http2 from "node:http2";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { ConnectError, Code } from "@connectrpc/connect";
import {
  DEFAULT_CONNECTION_LIMITS,
  startGrpcServer,
  type ConnectionCloseReason,
  type ConnectionLimits,
  type StartedGrpcServer,
} from "../../src/net/index.js";

async function serve(limits: Partial<ConnectionLimits>, closed: ConnectionCloseReason[]): Promise<StartedGrpcServer> {
  return startGrpcServer({
    listen: { host: "127.0.0.1", port: 0 },
    limits,
    onConnectionClosed: (r) => closed.push(r),
    routes: (router) =>
      router.service(SecretDiscoveryService, {
        fetchSecrets: () => {
          throw new ConnectError("no", Code.Unauthenticated);
        },
      }),
  });
}

/** Polls `cond` every 10 ms until true or `ms` passed (bounded; no fixed sleeps). */
async function until(cond: () => boolean, ms = 5_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

function connect(server: StartedGrpcServer): http2.ClientHttp2Session {
  const s = http2.connect(`http://${server.address}`);
  s.on("error", () => {});
  return s;
}

async function connected(s: http2.ClientHttp2Session): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    s.once("remoteSettings", () => resolve());
    s.once("close", () => reject(new Error("closed before settings")));
  });
}

test("every connection is told the server's concurrent-stream cap (SETTINGS_MAX_CONCURRENT_STREAMS)", async () => {
  const closed: ConnectionCloseReason[] = [];
  const server = await serve({}, closed);
  const s = connect(server);
  try {
    await connected(s);
    assert.is(s.remoteSettings.maxConcurrentStreams, DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams);
    assert.ok(DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams * DEFAULT_CONNECTION_LIMITS.maxConnections >= 15_000, "room for the bench's 5k SDS + 10k ADS");
  } finally {
    s.destroy();
    await server.close(200);
  }
});

test("a connection above maxConnections is closed at accept, and counted; the ones inside the cap stay", async () => {
  const closed: ConnectionCloseReason[] = [];
  const server = await serve({ maxConnections: 2 }, closed);
  const held = [connect(server), connect(server)];
  try {
    await Promise.all(held.map(connected));
    const third = connect(server);
    const thirdClosed = new Promise<void>((r) => third.once("close", () => r()));
    await thirdClosed;
    assert.ok(await until(() => closed.includes("max_connections")));
    assert.is(server.sessionCount(), 2);
    assert.ok(held.every((s) => !s.closed && !s.destroyed));
  } finally {
    for (const s of held) s.destroy();
    await server.close(200);
  }
});

test("an idle connection (no open stream) gets GOAWAY after idleTimeoutMs, and is counted", async () => {
  const closed: ConnectionCloseReason[] = [];
  const server = await serve({ idleTimeoutMs: 100 }, closed);
  const s = connect(server);
  try {
    await connected(s);
    const goaway = new Promise<number>((r) => s.once("goaway", (code) => r(code)));
    assert.is(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    assert.ok(await until(() => server.sessionCount() === 0));
    assert.equal(closed, ["idle"]);
  } finally {
    s.destroy();
    await server.close(200);
  }
});

test("a connection with an open stream is not idle: it is kept past idleTimeoutMs", async () => {
  const closed: ConnectionCloseReason[] = [];
  const server = await serve({ idleTimeoutMs: 100 }, closed);
  const s = connect(server);
  try {
    await connected(s);
    // A request whose body never ends keeps the stream open.
    const req = s.request({ ":method": "POST", ":path": "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets", "content-type": "application/grpc", te: "trailers" });
    req.on("error", () => {});
    // Another connection, without a stream, is closed meanwhile: by then the first has waited past the timeout.
    const other = connect(server);
    await new Promise<void>((r) => other.once("goaway", () => r()));
    other.destroy();
    assert.ok(!s.closed && !s.destroyed, "the connection with a stream stays open");
    assert.equal(closed, ["idle"]);
    req.close();
  } finally {
    s.destroy();
    await server.close(200);
  }
});

test("a peer that stops answering PINGs is dropped after pingTimeoutMs", async () => {
  const closed: ConnectionCloseReason[] = [];
  const server = await serve({ pingIntervalMs: 50, pingTimeoutMs: 100 }, closed);
  const net = await import("node:net");
  // A raw TCP client that sends the HTTP/2 preface and SETTINGS, then never reads nor answers.
  const sock = net.connect(server.port, "127.0.0.1");
  sock.on("error", () => {});
  await new Promise<void>((r) => sock.once("connect", () => r()));
  sock.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
  try {
    assert.ok(await until(() => closed.includes("ping_timeout")), `closed: ${closed.join(",")}`);
    assert.ok(await until(() => server.sessionCount() === 0));
  } finally {
    sock.destroy();
    await server.close(200);
  }
});

test.run();
