// The shared HTTP/2 gRPC server survives what real clients send: Envoy's google_grpc
// client on a Unix socket puts the percent-encoded socket path in :authority, which
// is no URL host (connect-node used to throw on it and the exception killed meshkey).
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as http2 from "node:http2";
import * as net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { DiscoveryRequestSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { ConnectError, Code } from "@connectrpc/connect";
import { startGrpcServer, type StartedGrpcServer } from "../../src/net/index.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-net-"));
let server: StartedGrpcServer;

test.before(async () => {
  server = await startGrpcServer({
    listen: { path: join(dir, "uds_path") },
    routes: (router) =>
      router.service(SecretDiscoveryService, {
        fetchSecrets: () => {
          throw new ConnectError("who are you", Code.Unauthenticated);
        },
      }),
  });
});

test.after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One unary gRPC call over the socket with a chosen :authority; returns grpc-status. */
function unaryWithAuthority(authority: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://localhost`, { createConnection: () => net.connect(join(dir, "uds_path")) });
    session.on("error", reject);
    const body = toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { resourceNames: ["default"] }));
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const req = session.request({
      ":method": "POST",
      ":path": "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets",
      ":authority": authority,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status: string | undefined;
    req.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
    req.on("trailers", (t) => (status = t["grpc-status"] as string | undefined));
    req.on("error", reject);
    req.on("close", () => {
      session.close();
      resolve(status);
    });
    req.resume();
    req.end(frame);
  });
}

const authorities: Array<[string, string]> = [
  ["Envoy's google_grpc on a Unix socket", "tmp%2Fsds%2Fuds_path"],
  ["a plain host", "localhost"],
  ["host and port", "127.0.0.1:15010"],
];

for (const [what, authority] of authorities) {
  test(`a call with ${what} as :authority reaches the handler (grpc-status ${Code.Unauthenticated})`, async () => {
    assert.is(await unaryWithAuthority(authority), String(Code.Unauthenticated));
  });
}

test("the server still answers after every odd authority (the process did not die)", async () => {
  await unaryWithAuthority("%%%");
  assert.is(await unaryWithAuthority("localhost"), String(Code.Unauthenticated));
});

test.run();
