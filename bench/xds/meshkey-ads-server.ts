// Child process of bench/ads.bench.ts: meshkey's ADS server alone (snapshot cache, mesh
// controller, startXdsServer on 127.0.0.1:0), serving the bench mesh of generation A.
// Same line protocol on stdin/stdout as the go-control-plane peer:
//   gc       global.gc()                                   → "ok gc"
//   prepare  (--mode fanout) translate generation B for every connected node, not timed → "ok prepare <ms>"
//   switch   --mode translate: controller.setMesh(B) (translation + fan-out);
//            --mode fanout: cache.setSnapshot of the prepared snapshots (fan-out only) → "ok switch <ms>"
// First line: "listening <port>".
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { writeHeapSnapshot } from "node:v8";
import { parseArgs } from "node:util";
import { parseMesh } from "../../src/mesh/index.js";
import { createMeshController, createSnapshotCache, startXdsServer, type Snapshot } from "../../src/xds/index.js";
import { createTranslationCache } from "../../src/xds/translation-cache.js";
import { meshYaml, TRANSLATE } from "./ads-mesh.js";

const { values } = parseArgs({ options: { services: { type: "string" }, sidecars: { type: "string" }, mode: { type: "string" } } });
const services = Number(values.services);
const sidecars = Number(values.sidecars);
const mode = values.mode === "fanout" ? "fanout" : "translate";
const gc = () => (globalThis as { gc?: () => void }).gc?.();

const meshB = parseMesh(meshYaml(services, "B"));
const cache = createSnapshotCache();
const controller = createMeshController({ cache, mesh: parseMesh(meshYaml(services, "A")), translate: TRANSLATE });
const server = await startXdsServer({
  listen: { host: "127.0.0.1", port: 0 },
  cache,
  // The default (4096 connections per port) would refuse most of 10,000 sidecars.
  connectionLimits: { maxConnections: sidecars + 1000 },
});
let prepared: Array<[string, Snapshot]> = [];
const profile = switchProfiler(process.env.ADS_BENCH_PROFILE_DIR);
gc();
process.stdout.write(`listening ${server.port}\n`);

for await (const line of createInterface({ input: process.stdin })) {
  const t0 = performance.now();
  if (line === "gc") {
    gc();
    gc();
    if (process.env.ADS_BENCH_MEMORY === "1") {
      // Where the RSS goes (stderr, for the reader): V8 heap, buffers outside it, the rest (nghttp2, code, stacks).
      const m = process.memoryUsage();
      const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
      if (cache.connectedNodes().length > 0 && process.env.ADS_BENCH_HEAP_SNAPSHOT) writeHeapSnapshot(process.env.ADS_BENCH_HEAP_SNAPSHOT);
      process.stderr.write(`meshkey server: rss ${mib(m.rss)}, heap used ${mib(m.heapUsed)} of ${mib(m.heapTotal)}, external ${mib(m.external)} (array buffers ${mib(m.arrayBuffers)}), ${cache.connectedNodes().length} nodes\n`);
    }
    process.stdout.write("ok gc\n");
  } else if (line === "prepare") {
    // B translated as the controller would (shared views, each node's own part), untimed.
    const translationB = createTranslationCache(TRANSLATE).translate(meshB);
    prepared = cache.connectedNodes().map((node) => [node.id, translationB.snapshotFor(node)]);
    process.stdout.write(`ok prepare ${(performance.now() - t0).toFixed(0)}\n`);
  } else if (line === "switch") {
    await profile.start();
    if (mode === "translate") {
      const problems = controller.setMesh(meshB);
      if (problems.length > 0) process.stdout.write(`error ${problems.join("; ")}\n`);
    } else {
      for (const [id, snap] of prepared) cache.setSnapshot(id, snap);
    }
    process.stdout.write(`ok switch ${(performance.now() - t0).toFixed(0)}\n`);
    profile.stopAfter(Number(process.env.ADS_BENCH_PROFILE_MS ?? 8_000));
  } else {
    process.stdout.write(`error unknown command ${JSON.stringify(line)}\n`);
  }
}
// stdin closed: the harness is done.
await profile.stop();
controller.close();
await server.close(1000);
process.exit(0);

/**
 * ADS_BENCH_PROFILE_DIR=dir: a CPU profile of the switch and the push after it (ADS_BENCH_PROFILE_MS, default 8 s),
 * written as <dir>/<mode>-switch.cpuprofile; `--cpu-prof` would mix in the connection storm and the preparation.
 */
function switchProfiler(dir: string | undefined) {
  const session = dir === undefined ? undefined : new Session();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  return {
    async start() {
      if (!session) return;
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.start");
    },
    stopAfter(ms: number) {
      if (session) timer = setTimeout(() => void this.stop(), ms);
    },
    async stop() {
      if (!session || dir === undefined || stopped) return;
      stopped = true;
      clearTimeout(timer);
      const { profile: p } = await session.post("Profiler.stop");
      writeFileSync(join(dir, `${mode}-switch.cpuprofile`), JSON.stringify(p));
      session.disconnect();
    },
  };
}
