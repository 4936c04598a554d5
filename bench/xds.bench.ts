// ADS under load: N streams (1k, 5k, 10k) from @grpc/grpc-js in another process,
// multiplexed over a few HTTP/2 connections on loopback. Measures the server's
// memory per stream, the time until every stream ACKs one mesh change, and the
// server CPU per pushed response — compared with the raw cost of encoding that
// response (toBinary), the floor of any push. Bounded: < 2 minutes in all.
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { create, toBinary } from "@bufbuild/protobuf";
import { DiscoveryResponseSchema } from "../gen/envoy/service/discovery/v3/discovery_pb.js";
import { parseMesh } from "../src/mesh/index.js";
import { createMeshController, createSnapshotCache, startXdsServer, TypeUrl } from "../src/xds/index.js";
import { writeBenchmarkSection } from "./report.js";

const SIZES = (process.env.XDS_BENCH_SIZES ?? "1000,5000,10000").split(",").map(Number);
const CONNECTIONS = 8;
const DEADLINE = Date.now() + 110_000;
const EDS = "outbound|7070||echo.foo.svc.cluster.local";

const meshYaml = (port: number) => `services:
  - name: echo
    namespace: foo
    ports: [{name: grpc, port: 7070, protocol: GRPC}]
    endpoints:
${Array.from({ length: 4 }, (_, i) => `      - {address: 10.0.0.${i + 1}, port: ${port}, locality: {zone: z${i % 2}}}`).join("\n")}
`;

const gc = () => (globalThis as { gc?: () => void }).gc?.();
const mb = (b: number) => (b / 1024 / 1024).toFixed(1);

function waitFor(child: ChildProcess, type: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`child: no "${type}" in ${ms} ms`)), ms);
    const on = (m: { type: string }) => {
      if (m.type === type) {
        clearTimeout(t);
        child.off("message", on);
        resolve();
      }
    };
    child.on("message", on);
  });
}

const cache = createSnapshotCache();
let port = 9000;
const controller = createMeshController({ cache, mesh: parseMesh(meshYaml(port)), translate: { trustDomain: "cluster.local", sdsSocketPath: "/s", tokenPath: "/t" } });
const server = await startXdsServer({ listen: { host: "127.0.0.1", port: 0 }, cache });

interface Row {
  n: number;
  connectMs: number;
  heapPerStream: number;
  rssPerStream: number;
  changeMs: number;
  cpuPerPushUs: number;
  rawEncodeUs: number;
}
const rows: Row[] = [];

for (const n of SIZES) {
  if (Date.now() > DEADLINE - 30_000) {
    console.log(`skipping ${n} streams: out of time budget`);
    break;
  }
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const child = fork("bench/xds/ads-load-client.ts", [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await waitFor(child, "started", 20_000);
  const t0 = performance.now();
  child.send({ type: "open", port: server.port, n, connections: CONNECTIONS, eds: EDS });
  await waitFor(child, "ready", Math.max(5_000, DEADLINE - Date.now()));
  const connectMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const heap1 = process.memoryUsage().heapUsed;
  const rss1 = process.memoryUsage().rss;

  child.send({ type: "watch-change" });
  await waitFor(child, "watching", 5_000);
  const cpu0 = process.cpuUsage();
  const t1 = performance.now();
  controller.setMesh(parseMesh(meshYaml(++port)));
  await waitFor(child, "changed", Math.max(5_000, DEADLINE - Date.now()));
  const changeMs = performance.now() - t1;
  const cpu = process.cpuUsage(cpu0);
  const cpuPerPushUs = (cpu.user + cpu.system) / n;

  // The floor: encoding the very response each stream was sent, once per stream.
  const any = cache.getSnapshot("bench-0")!.get(TypeUrl.Endpoint)!.resources.get(EDS)!.any;
  const encode = (i: number) => toBinary(DiscoveryResponseSchema, create(DiscoveryResponseSchema, { versionInfo: "v", typeUrl: TypeUrl.Endpoint, nonce: String(i), resources: [any] }));
  for (let i = 0; i < 2000; i++) encode(i); // warm up
  const r0 = performance.now();
  for (let i = 0; i < n; i++) encode(i);
  const rawEncodeUs = ((performance.now() - r0) * 1000) / n;

  const row = { n, connectMs, heapPerStream: (heap1 - heap0) / n, rssPerStream: (rss1 - rss0) / n, changeMs, cpuPerPushUs, rawEncodeUs };
  rows.push(row);
  console.log(
    `${n} streams: all ACKed the initial state in ${connectMs.toFixed(0)} ms; heap ${(row.heapPerStream / 1024).toFixed(1)} KiB/stream, RSS ${(row.rssPerStream / 1024).toFixed(1)} KiB/stream; ` +
      `one mesh change ACKed by all in ${changeMs.toFixed(0)} ms; CPU ${cpuPerPushUs.toFixed(1)} µs/push (raw encode ${rawEncodeUs.toFixed(2)} µs, ×${(cpuPerPushUs / rawEncodeUs).toFixed(0)})`,
  );
  child.send({ type: "close" });
  await once(child, "exit");
  const end = Date.now() + 10_000;
  while (server.syncStatus().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}

controller.close();
await server.close(1000);

const table = [
  "| streams | initial state ACKed by all | heap / stream | RSS / stream | mesh change ACKed by all | server CPU / push | raw encode / push | ratio |",
  "|---:|---:|---:|---:|---:|---:|---:|---:|",
  ...rows.map(
    (r) =>
      `| ${r.n} | ${r.connectMs.toFixed(0)} ms | ${(r.heapPerStream / 1024).toFixed(1)} KiB | ${(r.rssPerStream / 1024).toFixed(1)} KiB | ${r.changeMs.toFixed(0)} ms | ${r.cpuPerPushUs.toFixed(1)} µs | ${r.rawEncodeUs.toFixed(2)} µs | ×${(r.cpuPerPushUs / r.rawEncodeUs).toFixed(0)} |`,
  ),
];
writeBenchmarkSection(
  "xds",
  `## ADS (streams, push time, memory)
\`npm run bench -- xds\` (${new Date().toISOString().slice(0, 10)}, Node ${process.version}). N SotW ADS streams (proxyless nodes,
CDS wildcard + one EDS name each) from @grpc/grpc-js in a child process over ${CONNECTIONS} HTTP/2 connections on
loopback; every response is ACKed. "mesh change" = one endpoint port change (\`setMesh\`), timed until every stream
ACKed the new EDS version. Memory is the server's heap / RSS growth after GC divided by N. CPU per push is server
user+system time during the change divided by N, compared with the raw floor: \`toBinary\` of the same
DiscoveryResponse (resource packed once, shared by every stream).

${table.join("\n")}
`,
);
console.log(`peak RSS ${mb(process.memoryUsage().rss)} MiB`);
process.exit(0);
