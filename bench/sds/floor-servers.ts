// The floors of the SDS first-secret bench: the same trivial StreamSecrets handler (the
// stream's first request is answered with one pre-packed certificate secret; later
// requests are read and ignored; the stream ends when the client half-closes) on four
// HTTP/2 stacks, each on its own Unix socket, so a reader sees where the cost of a new
// stream is:
//   http2-raw         node:http2 alone: headers, one length-prefixed message (encoded
//                     once), trailers; no gRPC library, the request is not decoded
//   grpc-js           @grpc/grpc-js's Server, generic service definition with
//                     protobuf-es serializers (request decoded, response encoded per stream)
//   connect-node      connectNodeAdapter on http2.createServer, nothing of ours
//   connect-node-net  the same handler through src/net's startGrpcServer (per-session
//                     adapter, :authority fix, connection limits, idle/PING), as the agent
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import type { ConnectRouter, ConnectRouterOptions } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { DEFAULT_CONNECTION_LIMITS, startGrpcServer } from "../../src/net/index.js";
import { packSecret } from "../../src/sds/secret-resource.js";
import { SECRET_TYPE_URL } from "../../src/spiffe/index.js";
import { STREAM_SECRETS_PATH, streamSecretsDefinition } from "./grpc-js-definition.js";

export const FLOOR_KINDS = ["http2-raw", "grpc-js", "connect-node", "connect-node-net"] as const;
export type FloorKind = (typeof FLOOR_KINDS)[number];

export interface FloorServer {
  close(): Promise<void>;
}

/** As the agent's SDS service: gRPC only, never compressed. */
const ROUTER_OPTIONS: ConnectRouterOptions = { compressMinBytes: Number.MAX_SAFE_INTEGER, grpc: true, grpcWeb: false, connect: false };
/** As src/net advertises. */
const SETTINGS: http2.Settings = { maxConcurrentStreams: DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams };

/** The one response every floor sends: a DiscoveryResponse holding a "default" certificate secret. */
export function floorResponse(certPem: string, keyPem: string): DiscoveryResponse {
  return create(DiscoveryResponseSchema, {
    versionInfo: "1",
    typeUrl: SECRET_TYPE_URL,
    nonce: "1",
    resources: [packSecret({ name: "default", kind: "tlsCertificate", version: "1", certificateChainPem: certPem, privateKeyPem: keyPem })],
  });
}

export function startFloorServer(kind: FloorKind, socketPath: string, response: DiscoveryResponse): Promise<FloorServer> {
  switch (kind) {
    case "http2-raw":
      return startRawHttp2(socketPath, response);
    case "grpc-js":
      return startGrpcJs(socketPath, response);
    case "connect-node":
      return startConnectNode(socketPath, response);
    case "connect-node-net":
      return startGrpcServer({ listen: { path: socketPath }, routes: connectRoutes(response) }).then((s) => ({ close: () => s.close(500) }));
  }
}

function connectRoutes(response: DiscoveryResponse) {
  return (router: ConnectRouter) =>
    router.service(
      SecretDiscoveryService,
      {
        async *streamSecrets(requests: AsyncIterable<DiscoveryRequest>) {
          const it = requests[Symbol.asyncIterator]();
          if ((await it.next()).done) return;
          yield response;
          while (!(await it.next()).done);
        },
      },
      ROUTER_OPTIONS,
    );
}

/** Listens on a Unix socket; close() ends every session so an idle client cannot hold the process. */
async function listenHttp2(server: http2.Http2Server, socketPath: string): Promise<FloorServer> {
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on("error", () => {});
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.destroy();
      }),
  };
}

function startConnectNode(socketPath: string, response: DiscoveryResponse): Promise<FloorServer> {
  const handler = connectNodeAdapter({ routes: connectRoutes(response), grpc: true, connect: false, grpcWeb: false });
  return listenHttp2(http2.createServer({ settings: SETTINGS }, handler), socketPath);
}

function startRawHttp2(socketPath: string, response: DiscoveryResponse): Promise<FloorServer> {
  const body = toBinary(DiscoveryResponseSchema, response);
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  const server = http2.createServer({ settings: SETTINGS });
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    if (headers[":path"] !== STREAM_SECRETS_PATH) {
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12" }, { endStream: true });
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    // The first complete length-prefixed request is answered; the rest is read and dropped.
    let head = Buffer.alloc(0);
    let answered = false;
    stream.on("data", (chunk: Buffer) => {
      if (answered) return;
      head = Buffer.concat([head, chunk]);
      if (head.length >= 5 && head.length >= 5 + head.readUInt32BE(1)) {
        answered = true;
        stream.write(frame);
      }
    });
    stream.on("end", () => stream.end());
  });
  return listenHttp2(server, socketPath);
}

async function startGrpcJs(socketPath: string, response: DiscoveryResponse): Promise<FloorServer> {
  const server = new grpc.Server({ "grpc.max_concurrent_streams": DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams });
  server.addService(streamSecretsDefinition, {
    streamSecrets(call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) {
      let answered = false;
      call.on("data", () => {
        if (answered) return;
        answered = true;
        call.write(response);
      });
      call.on("end", () => call.end());
      call.on("error", () => {});
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
}
