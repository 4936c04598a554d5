// The mesh file's guards against silent wipes: an empty or truncated file is not an
// empty mesh (only an explicit `services: []` is), a file above the size limit is
// refused before it is parsed, and a change that removes more than half of the
// services is logged (and refused with guardMassRemoval). Each refusal keeps the
// last good snapshot serving and counts in meshkey_mesh_reloads_total{result="invalid"}.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { loadMeshFile, MeshError, parseMesh, readMeshFile } from "../../src/mesh/index.js";
import { createMeshController, createSnapshotCache, TypeUrl } from "../../src/xds/index.js";

const opts = { trustDomain: "cluster.local", sdsSocketPath: "/s", tokenPath: "/t" };
const node = { id: "grpc-1", metadata: { GENERATOR: "grpc" } };

const servicesYaml = (names: string[]) =>
  `services:\n${names.map((n, i) => `  - name: ${n}\n    namespace: foo\n    ports: [{name: grpc, port: ${7000 + i}, protocol: GRPC}]\n    endpoints: [{address: 127.0.0.1, port: ${9000 + i}}]\n`).join("")}`;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 5_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const truncated: Array<{ name: string; text: string; detail: RegExp }> = [
  { name: "an empty file", text: "", detail: /the mesh file is empty .*"services: \[\]"/ },
  { name: "a file of whitespace only", text: "  \n\n\t\n", detail: /the mesh file is empty/ },
  { name: "a file of comments only", text: "# services:\n#   - name: a\n", detail: /the mesh file is empty/ },
  { name: "a document with no services key", text: "namespaces:\n  - name: foo\n", detail: /services: is required: .*"services: \[\]"/ },
  { name: "an empty mapping", text: "{}\n", detail: /services: is required/ },
  { name: "a null document", text: "~\n", detail: /services: is required/ },
];

for (const c of truncated) {
  test(`${c.name} is refused with an error naming the file, not read as an empty mesh`, () => {
    try {
      parseMesh(c.text, "mesh.yaml");
      assert.unreachable("parseMesh accepted it");
    } catch (err) {
      assert.instance(err, MeshError);
      assert.ok((err as MeshError).message.startsWith("mesh.yaml"), (err as MeshError).message);
      assert.match((err as MeshError).message, c.detail);
    }
  });
}

test("an explicit `services: []` is a valid empty mesh", () => {
  assert.equal(parseMesh("services: []\n", "mesh.yaml").services, []);
  assert.equal(parseMesh("# nothing deployed yet\nservices: []\n", "mesh.yaml").services, []);
});

test("a mesh file above the size limit is refused before it is parsed, naming the file and the limit", async () => {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-guard-"));
  try {
    const file = join(dir, "mesh.yaml");
    // Not YAML at all: a parse would report a YAML error, so the size error proves no parse ran.
    writeFileSync(file, `services: [\n${"x".repeat(2_000)}`);
    try {
      await loadMeshFile(file, { maxBytes: 1_024 });
      assert.unreachable("loaded");
    } catch (err) {
      assert.instance(err, MeshError);
      assert.match((err as Error).message, `${file}: the mesh file is 2012 bytes, above the limit of 1024 bytes (--max-mesh-bytes)`);
    }
    // At the limit exactly, it is read.
    writeFileSync(file, "services: []\n");
    assert.is(await readMeshFile(file, { maxBytes: 13 }), "services: []\n");
    try {
      await readMeshFile(file, { maxBytes: 12 });
      assert.unreachable("read one byte over the limit");
    } catch (err) {
      assert.match((err as Error).message, /is 13 bytes, above the limit of 12 bytes/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a missing mesh file is an error naming the file", async () => {
  try {
    await readMeshFile("/nonexistent-meshkey/mesh.yaml");
    assert.unreachable("read");
  } catch (err) {
    assert.instance(err, MeshError);
    assert.match((err as Error).message, /^\/nonexistent-meshkey\/mesh\.yaml: cannot read: .*ENOENT/);
  }
});

interface Harness {
  file: string;
  lines: () => Array<{ level: number; msg: string; err?: string; removed?: number; services?: number }>;
  registry: Registry;
  ctl: ReturnType<typeof createMeshController>;
  clusterVersion: () => string;
  invalid: () => Promise<number>;
  close: () => void;
}

async function watched(initial: string, extra: { guardMassRemoval?: boolean; maxMeshBytes?: number } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-guard-"));
  const file = join(dir, "mesh.yaml");
  writeFileSync(file, initial);
  const out: string[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (out.push(String(c)), cb()) }));
  const registry = new Registry();
  const cache = createSnapshotCache();
  const ctl = createMeshController({ cache, translate: opts, mesh: await loadMeshFile(file), meshFile: file, logger, registry, ...extra });
  cache.openNode(node);
  await ctl.watching();
  return {
    file,
    lines: () => out.map((l) => JSON.parse(l) as { level: number; msg: string }),
    registry,
    ctl,
    clusterVersion: () => cache.getSnapshot(node.id)!.get(TypeUrl.Cluster)!.version,
    async invalid() {
      const m = /meshkey_mesh_reloads_total\{result="invalid"\} (\d+)/.exec(await registry.metrics());
      return m ? Number(m[1]) : 0;
    },
    close() {
      ctl.close();
      cache.closeNode(node.id);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

for (const c of [
  { name: "truncated to 0 bytes", text: "" },
  { name: "emptied down to a comment", text: "# emptied by a failed deploy\n" },
  { name: "left with no services key", text: "namespaces: [{name: foo}]\n" },
]) {
  test(`the watched file ${c.name} is refused and counted; the last good snapshot keeps serving`, async () => {
    const h = await watched(servicesYaml(["a", "b"]));
    try {
      const before = h.clusterVersion();
      writeFileSync(h.file, c.text);
      await until("the refusal", async () => (await h.invalid()) === 1);
      const line = h.lines().find((l) => l.msg.startsWith("mesh change rejected"))!;
      assert.is(line.level, 50);
      assert.ok(line.err!.startsWith(`${h.file}`), line.err);
      assert.match(line.err!, /"services: \[\]"/);
      assert.is(h.clusterVersion(), before);
      assert.is(h.ctl.mesh().services.length, 2);
      assert.is(h.ctl.generation(), 0);
    } finally {
      h.close();
    }
  });
}

test("the watched file changed to an explicit `services: []` is published (an intended empty mesh)", async () => {
  const h = await watched(servicesYaml(["a", "b"]));
  try {
    writeFileSync(h.file, "services: []\n");
    await until("the publish", () => h.ctl.generation() === 1);
    assert.is(h.ctl.mesh().services.length, 0);
    assert.is(await h.invalid(), 0);
    // Without the guard, removing every service is only a warning.
    const warn = h.lines().find((l) => l.level === 40)!;
    assert.match(warn.msg, /removes 2 of 2 services/);
  } finally {
    h.close();
  }
});

test("a watched file that grows past --max-mesh-bytes is refused and counted; the last good snapshot keeps serving", async () => {
  const h = await watched(servicesYaml(["a"]), { maxMeshBytes: 4_096 });
  try {
    const before = h.clusterVersion();
    appendFileSync(h.file, `# ${"x".repeat(5_000)}\n`);
    await until("the refusal", async () => (await h.invalid()) === 1);
    const line = h.lines().find((l) => l.msg.startsWith("mesh change rejected"))!;
    assert.match(line.err!, `${h.file}: the mesh file is `);
    assert.match(line.err!, /above the limit of 4096 bytes \(--max-mesh-bytes\); not parsed/);
    assert.is(h.clusterVersion(), before);
  } finally {
    h.close();
  }
});

const five = ["a", "b", "c", "d", "e"];
const massCases = [
  { name: "removing 3 of 5 services is logged as a warning and published", keep: ["a", "b"], guard: false, published: true, warned: true },
  { name: "removing 3 of 5 services with guardMassRemoval is refused, counted, and the last good snapshot keeps serving", keep: ["a", "b"], guard: true, published: false, warned: false },
  { name: "removing 2 of 5 services (not more than half) is published without a warning, even with the guard", keep: ["a", "b", "c"], guard: true, published: true, warned: false },
  { name: "adding services is never guarded", keep: [...five, "f", "g"], guard: true, published: true, warned: false },
];
for (const c of massCases) {
  test(c.name, async () => {
    const h = await watched(servicesYaml(five), { guardMassRemoval: c.guard });
    try {
      const before = h.clusterVersion();
      writeFileSync(h.file, servicesYaml(c.keep));
      if (c.published) {
        await until("the publish", () => h.ctl.generation() === 1);
        assert.is(h.ctl.mesh().services.length, c.keep.length);
        assert.is.not(h.clusterVersion(), before);
        assert.is(await h.invalid(), 0);
      } else {
        await until("the refusal", async () => (await h.invalid()) === 1);
        const line = h.lines().find((l) => l.level === 50)!;
        assert.match(line.msg, `mesh change refused by --guard-mass-removal: it removes 3 of 5 services (${h.file})`);
        assert.is(line.removed, 3);
        assert.is(h.ctl.generation(), 0);
        assert.is(h.ctl.mesh().services.length, 5);
        assert.is(h.clusterVersion(), before);
      }
      const warnings = h.lines().filter((l) => l.level === 40);
      assert.is(warnings.length, c.warned ? 1 : 0, JSON.stringify(warnings));
      if (c.warned) assert.match(warnings[0]!.msg, /removes 3 of 5 services \(more than half\)/);
    } finally {
      h.close();
    }
  });
}

test("setMesh answers why a guarded mass removal was refused", async () => {
  const cache = createSnapshotCache();
  const ctl = createMeshController({ cache, translate: opts, mesh: parseMesh(servicesYaml(five)), guardMassRemoval: true });
  try {
    const problems = ctl.setMesh(parseMesh("services: []\n"));
    assert.equal(problems, ["mesh change refused by --guard-mass-removal: it removes 5 of 5 services"]);
    assert.is(ctl.mesh().services.length, 5);
  } finally {
    ctl.close();
  }
});

test.run();
