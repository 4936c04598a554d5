// ADS under load: N streams (1k, 5k, 10k) from @grpc/grpc-js in another process,
// multiplexed over a few HTTP/2 connections on loopback. Measures the server's
// memory per stream, the time until every stream ACKs one mesh change, and the
// server CPU per pushed response — each compared, in the same run, with a bare
// connect-node ADS handler (the raw limit). Bounded: < 2 minutes in all.
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startBareServers } from "./load/bare-servers.js";
import { parseMesh, translateForNode } from "../src/mesh/index.js";
import { createMeshController, createSnapshotCache, snapshotFromResources, startXdsServer, TypeUrl } from "../src/xds/index.js";
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
const translate = { trustDomain: "cluster.local", sdsSocketPath: "/s", tokenPath: "/t" };
const controller = createMeshController({ cache, mesh: parseMesh(meshYaml(port)), translate });
const server = await startXdsServer({ listen: { host: "127.0.0.1", port: 0 }, cache });
const currentEdsAny = () =>
  snapshotFromResources(translateForNode(controller.mesh(), { id: "bench", metadata: { GENERATOR: "grpc" } }, translate)).get(TypeUrl.Endpoint)!.resources.get(EDS)!.any;

interface Measure {
  connectMs: number;
  heapPerStream: number;
  rssPerStream: number;
  changeMs: number;
  cpuPerPushUs: number;
}

/** Opens n streams from a child process, then times one change until every stream ACKed it. */
async function measure(n: number, serverPort: number, change: () => void): Promise<Measure> {
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const child = fork("bench/xds/ads-load-client.ts", [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  try {
    await waitFor(child, "started", 20_000);
    const t0 = performance.now();
    child.send({ type: "open", port: serverPort, n, connections: CONNECTIONS, eds: EDS });
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
    change();
    await waitFor(child, "changed", Math.max(5_000, DEADLINE - Date.now()));
    const changeMs = performance.now() - t1;
    const cpu = process.cpuUsage(cpu0);
    return { connectMs, heapPerStream: (heap1 - heap0) / n, rssPerStream: (rss1 - rss0) / n, changeMs, cpuPerPushUs: (cpu.user + cpu.system) / n };
  } finally {
    child.send({ type: "close" });
    await once(child, "exit");
  }
}

const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
const rows: Array<{ n: number; meshkey: Measure; bare: Measure | undefined }> = [];

for (const n of SIZES) {
  if (Date.now() > DEADLINE - 35_000) {
    console.log(`skipping ${n} streams: out of time budget`);
    break;
  }
  const m = await measure(n, server.port, () => controller.setMesh(parseMesh(meshYaml(++port))));
  const end = Date.now() + 10_000;
  while (server.syncStatus().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  console.log(
    `meshkey, ${n} streams: initial state ACKed by all in ${m.connectMs.toFixed(0)} ms; heap ${kib(m.heapPerStream)}/stream, RSS ${kib(m.rssPerStream)}/stream; ` +
      `one mesh change ACKed by all in ${m.changeMs.toFixed(0)} ms; server CPU ${m.cpuPerPushUs.toFixed(1)} µs/push`,
  );
  // The raw limit: the same streams on a bare connect-node handler (no cache, no state), when time allows.
  let b: Measure | undefined;
  if (Date.now() < DEADLINE - 40_000 || n <= 1000) {
    // The load bench's bare handlers; only their ADS side is used here (the SDS socket stays idle).
    const socketDir = mkdtempSync(join(tmpdir(), "meshkey-bench-bare-"));
    const bare = await startBareServers(join(socketDir, "uds_path"), { ads: currentEdsAny(), secret: currentEdsAny() });
    let v = 0;
    b = await measure(n, bare.ads.port, () => bare.push(`bare-${++v}`));
    await bare.close();
    rmSync(socketDir, { recursive: true, force: true });
    console.log(
      `bare connect-node, ${n} streams: heap ${kib(b.heapPerStream)}/stream; change ACKed by all in ${b.changeMs.toFixed(0)} ms; CPU ${b.cpuPerPushUs.toFixed(1)} µs/push`,
    );
  }
  rows.push({ n, meshkey: m, bare: b });
}

controller.close();
await server.close(1000);

const ratio = (a: number, b: number | undefined) => (b === undefined || b <= 0 ? "n/a" : `×${(a / b).toFixed(2)}`);
const table = [
  "| streams | initial state ACKed by all | heap / stream (bare, ratio) | RSS / stream | mesh change ACKed by all (bare, ratio) | server CPU / push (bare, ratio) |",
  "|---:|---:|---:|---:|---:|---:|",
  ...rows.map(
    ({ n, meshkey: m, bare: b }) =>
      `| ${n} | ${m.connectMs.toFixed(0)} ms | ${kib(m.heapPerStream)} (${b ? kib(b.heapPerStream) : "–"}, ${ratio(m.heapPerStream, b?.heapPerStream)}) | ${kib(m.rssPerStream)} | ` +
      `${m.changeMs.toFixed(0)} ms (${b ? `${b.changeMs.toFixed(0)} ms` : "–"}, ${ratio(m.changeMs, b?.changeMs)}) | ${m.cpuPerPushUs.toFixed(1)} µs (${b ? `${b.cpuPerPushUs.toFixed(1)} µs` : "–"}, ${ratio(m.cpuPerPushUs, b?.cpuPerPushUs)}) |`,
  ),
];
writeBenchmarkSection(
  "xds",
  `## ADS (streams, push time, memory)
\`npm run bench -- xds\` (${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} cores, load average
${loadavg()[0]!.toFixed(1)} at the end of the run: a single run on a shared machine, so expect ±50 % on the timings). N SotW ADS streams (proxyless nodes,
CDS wildcard + one EDS name each) from @grpc/grpc-js in a child process over ${CONNECTIONS} HTTP/2 connections on
loopback; every response is ACKed. "mesh change" = one endpoint port change (\`setMesh\`), timed until every stream
ACKed the new EDS version. Memory is the server's heap / RSS growth after GC divided by N. CPU per push is server
user+system time during the change (translation, snapshot, every push and every ACK) divided by N, process-wide
server CPU. The raw limit, in the same run: the same client against a bare connect-node ADS handler (no cache, no
protocol state; it answers the first requests and pushes one EDS response per stream), so the ratios are meshkey's
own cost on top of connect-node + HTTP/2 + protobuf. Every response carries the resource packed once and shared.

${table.join("\n")}
`,
);
console.log(`peak RSS ${mb(process.memoryUsage().rss)} MiB`);
process.exit(0);
