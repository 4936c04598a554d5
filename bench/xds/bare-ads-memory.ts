// What one connected sidecar costs a bare connect-node ADS server (no cache, no translation):
// N HTTP/2 connections, each with one StreamAggregatedResources stream that sent one request and
// got one small response, held open. Prints the server process's RSS and heap per connection
// after GC, so that meshkey's figure in bench/ads.bench.ts can be read against its stack's floor.
//   node --import tsx bench/xds/bare-ads-memory.ts [N]
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { DiscoveryRequestSchema, DiscoveryResponseSchema, type DiscoveryRequest } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { startGrpcServer } from "../../src/net/index.js";

const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);

if (process.argv[2] === "--server") {
  const response = create(DiscoveryResponseSchema, { versionInfo: "1", typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", nonce: "1" });
  const server = await startGrpcServer({
    listen: { host: "127.0.0.1", port: 0 },
    limits: { maxConnections: 100_000 },
    routes: (router) =>
      router.service(AggregatedDiscoveryService, {
        async *streamAggregatedResources(requests: AsyncIterable<DiscoveryRequest>) {
          for await (const _ of requests) yield response;
        },
      }),
  });
  process.send!({ port: server.port });
  process.on("message", (m: string) => {
    if (m === "gc") {
      for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.();
      const mu = process.memoryUsage();
      process.send!({ heapUsed: mu.heapUsed, heapTotal: mu.heapTotal, external: mu.external });
    } else process.exit(0);
  });
} else {
  const n = Number(process.argv[2] ?? 1000);
  const child = fork(new URL(import.meta.url).pathname, ["--server"], { execArgv: ["--import", "tsx", "--expose-gc"] });
  const next = <T>() => new Promise<T>((r) => child.once("message", (m) => r(m as T)));
  const { port } = await next<{ port: number }>();
  const measure = async () => {
    child.send("gc");
    const m = await next<{ heapUsed: number; heapTotal: number; external: number }>();
    return { ...m, rss: rssKiB(child.pid!) * 1024 };
  };
  await new Promise((r) => setTimeout(r, 500));
  const idle = await measure();
  const held: Array<() => void> = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, async () => {
        const sessions = new Http2SessionManager(`http://127.0.0.1:${port}`);
        const ads = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, sessionManager: sessions }));
        const input = createWritableIterable<DiscoveryRequest>();
        const out = ads.streamAggregatedResources(input)[Symbol.asyncIterator]();
        void input.write(create(DiscoveryRequestSchema, { node: { id: "n" }, typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster" }));
        await out.next();
        held.push(() => {
          input.close();
          sessions.abort();
        });
      }),
    );
  }
  const loaded = await measure();
  const per = (k: "rss" | "heapUsed" | "heapTotal" | "external") => ((loaded[k] - idle[k]) / n / 1024).toFixed(1);
  console.log(`bare connect-node ADS server (src/net), ${n} connections with one open stream each, per connection after GC: RSS ${per("rss")} KiB, V8 heap used ${per("heapUsed")} KiB (heap committed ${per("heapTotal")} KiB), external ${per("external")} KiB`);
  for (const h of held) h();
  child.send("exit");
  process.exit(0);
}
