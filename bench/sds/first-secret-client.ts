// The load of the first-secret bench: a grpc-js client in its own process (as Envoy is),
// pinned to the client core. Each request line {socketPath, tokens, connections} is one
// turn: one new StreamSecrets stream per token, all at once, each asking for "default" and
// timed until its first response; the answer is {latencies (sorted, ms), wallMs}.
// connections "shared": one grpc-js client (one connection) per socket for the process's
// life, warmed by a first ROOTCA stream; "per-stream": a client with its own subchannel
// pool, so its own connection, for each stream, as Envoy does with one SDS config source
// per stream.
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import type { DiscoveryRequest, DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { Conversation, metadataFor, sotwRequest } from "../../test/sds/sds-harness.js";
import { CLIENT_CORE, onCore } from "./cores.js";
import { streamSecretsDefinition } from "./grpc-js-definition.js";
import { LineProcess, serveLines } from "./line-process.js";

export interface TurnResult {
  latencies: number[];
  wallMs: number;
}

export type Connections = "shared" | "per-stream";

export interface FirstSecretClient {
  pid: number;
  turn(socketPath: string, tokens: string[], connections?: Connections): Promise<TurnResult>;
  stop(): Promise<void>;
}

export function startFirstSecretClient(): FirstSecretClient {
  const p = new LineProcess(onCore(CLIENT_CORE, [process.execPath, "--import", "tsx", fileURLToPath(import.meta.url)]));
  return {
    pid: p.pid,
    turn: (socketPath, tokens, connections = "shared") => p.ask<TurnResult>({ socketPath, tokens, connections }),
    stop: () => p.stop(),
  };
}

const StreamSecretsClient = grpc.makeGenericClientConstructor(streamSecretsDefinition, "SecretDiscoveryService");

/** A StreamSecrets client; with ownConnection, grpc-js does not share its connection with other clients. */
export class StreamSecretsConnection {
  private readonly client: grpc.Client & { streamSecrets(md: grpc.Metadata): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> };
  constructor(socketPath: string, ownConnection = false) {
    this.client = new StreamSecretsClient(`unix://${socketPath}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
      ...(ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
    }) as never;
  }
  stream(token: string): Conversation<DiscoveryRequest, DiscoveryResponse> {
    return new Conversation(this.client.streamSecrets(metadataFor({ kind: "header", token })));
  }
  close(): void {
    this.client.close();
  }
}

/**
 * One turn (in whatever process calls it): `connect` gives the client of each stream. Each
 * stream is then half-closed and ends with the server's OK status, as a stream Envoy no
 * longer needs: cancelling them instead (RST_STREAM) trips nghttp2's rapid-reset limit
 * after about a thousand streams on one connection, and the server sends GOAWAY. The turn
 * returns once every stream has ended; wallMs is until the last first secret.
 */
export async function firstSecrets(connect: () => { client: StreamSecretsConnection; own: boolean }, tokens: string[]): Promise<TurnResult> {
  const latencies: number[] = [];
  const t0 = performance.now();
  let lastAt = t0;
  await Promise.all(
    tokens.map(async (token) => {
      const { client, own } = connect();
      const s = client.stream(token);
      const start = performance.now();
      s.send(sotwRequest(["default"]));
      await s.next(60_000);
      lastAt = performance.now();
      latencies.push(lastAt - start);
      s.call.end();
      const status = await s.status;
      if (own) client.close();
      if (status.code !== 0) throw new Error(`stream ended with status ${status.code}: ${status.details}`);
    }),
  );
  return { latencies: latencies.sort((a, b) => a - b), wallMs: lastAt - t0 };
}

/** A client whose connection and code paths are warm (a ROOTCA stream, no certificate issued). */
export async function warmClient(socketPath: string, token: string): Promise<StreamSecretsConnection> {
  const client = new StreamSecretsConnection(socketPath);
  const warm = client.stream(token);
  warm.send(sotwRequest(["ROOTCA"]));
  await warm.next(10_000);
  warm.call.end();
  await warm.status;
  return client;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // grpc-js records a stack per call; TS source-mapping those is client CPU for nothing.
  process.setSourceMapsEnabled(false);
  const clients = new Map<string, StreamSecretsConnection>();
  await serveLines(async (request) => {
    const { socketPath, tokens, connections } = request as { socketPath: string; tokens: string[]; connections: Connections };
    let shared = clients.get(socketPath);
    if (!shared) clients.set(socketPath, (shared = await warmClient(socketPath, tokens[0]!)));
    const client = shared;
    return firstSecrets(
      connections === "per-stream" ? () => ({ client: new StreamSecretsConnection(socketPath, true), own: true }) : () => ({ client, own: false }),
      tokens,
    );
  });
  for (const c of clients.values()) c.close();
  process.exit(0);
}
