// The watched mesh file: a valid change is published to the cache; an invalid one is
// rejected with a log line and a metric, and the last good snapshot keeps serving.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { loadMeshFile } from "../../src/mesh/index.js";
import { createMeshController, createSnapshotCache, TypeUrl } from "../../src/xds/index.js";

const mesh = (port: number) => `services:\n  - name: echo\n    namespace: foo\n    ports: [{name: grpc, port: 7070, protocol: GRPC}]\n    endpoints: [{address: 127.0.0.1, port: ${port}}]\n`;
const opts = { trustDomain: "cluster.local", sdsSocketPath: "/s", tokenPath: "/t" };
const node = { id: "grpc-1", metadata: { GENERATOR: "grpc" } };

async function until(check: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("an invalid mesh change is rejected (log line, metric) and the last good snapshot keeps serving; a valid one is published", async () => {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-watch-"));
  const file = join(dir, "mesh.yaml");
  writeFileSync(file, mesh(9001));
  const lines: string[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
  const registry = new Registry();
  const cache = createSnapshotCache();
  const ctl = createMeshController({ cache, translate: opts, mesh: await loadMeshFile(file), meshFile: file, logger, registry });
  try {
    cache.openNode(node);
    const edsVersion = () => cache.getSnapshot(node.id)!.get(TypeUrl.Endpoint)!.version;
    const first = edsVersion();
    await new Promise((r) => setTimeout(r, 100));

    writeFileSync(file, mesh(9001).replace("port: 7070", "port: seventy"));
    await until(() => lines.some((l) => l.includes("mesh change rejected")));
    const line = JSON.parse(lines.find((l) => l.includes("mesh change rejected"))!) as { err: string; level: number };
    assert.match(line.err, `${file}:4: services[0].ports[0].port: must be integer`);
    assert.is(line.level, 50);
    assert.match(await registry.metrics(), /meshkey_mesh_reloads_total\{result="invalid"\} 1/);
    assert.is(edsVersion(), first, "the last good snapshot keeps serving");
    assert.is(ctl.generation(), 0);

    writeFileSync(file, mesh(9002));
    await until(() => ctl.generation() === 1);
    assert.is.not(edsVersion(), first);
    assert.match(JSON.stringify(ctl.configDump(node.id)), /"port_value":9002/);
    assert.match(await registry.metrics(), /meshkey_mesh_reloads_total\{result="ok"\} 1/);
  } finally {
    ctl.close();
    cache.closeNode(node.id);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a node's snapshot made on demand goes away with its last stream", () => {
  const cache = createSnapshotCache();
  const ctl = createMeshController({ cache, translate: opts });
  cache.openNode({ id: "sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local" });
  assert.ok(cache.getSnapshot("sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local"));
  cache.closeNode("sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local");
  assert.is(cache.getSnapshot("sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local"), undefined);
  ctl.close();
});

test("nodes that translate alike share one encoded snapshot", () => {
  const cache = createSnapshotCache();
  const ctl = createMeshController({ cache, translate: opts });
  cache.openNode({ id: "a", metadata: { GENERATOR: "grpc" } });
  cache.openNode({ id: "b", metadata: { GENERATOR: "grpc" } });
  assert.ok(cache.getSnapshot("a") === cache.getSnapshot("b"));
  ctl.close();
});

test("sidecars with different snapshots share the packed copy of a resource they both get", () => {
  const cache = createSnapshotCache();
  const ctl = createMeshController({ cache, translate: opts });
  const a = "sidecar~127.0.1.2~sleep-0.foo~foo.svc.cluster.local";
  const b = "sidecar~127.0.2.2~sleep-0.bar~bar.svc.cluster.local";
  cache.openNode({ id: a });
  cache.openNode({ id: b });
  const name = "outbound|8000||httpbin.foo.svc.cluster.local";
  const ca = cache.getSnapshot(a)!.get(TypeUrl.Cluster)!.resources.get(name)!;
  const cb = cache.getSnapshot(b)!.get(TypeUrl.Cluster)!.resources.get(name)!;
  assert.ok(cache.getSnapshot(a) !== cache.getSnapshot(b));
  assert.ok(ca.any === cb.any, "one packed Any for both nodes");
  ctl.close();
});

test.run();
