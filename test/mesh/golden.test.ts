// Golden files: for each fixtures/mesh/*.yaml, what `meshkey render --format F` writes
// per node lives in fixtures/mesh/golden/<mesh>/<F>/ (config-dump, bootstrap).
// UPDATE_GOLDEN=1 npm test -- golden rewrites them and removes orphans; a mismatch
// prints a semantic diff (src/envoy/golden.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { expectGolden, pruneGoldens, updatingGoldens } from "../../src/envoy/index.js";
import { parseMesh } from "../../src/mesh/index.js";
import { RENDER_FORMATS, renderMesh } from "../../src/xds/index.js";

const update = updatingGoldens();
const fixtures = "fixtures/mesh";
const goldenRoot = join(fixtures, "golden");
const opts = { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" };

const meshes = readdirSync(fixtures).filter((f) => f.endsWith(".yaml")).sort();

test("every mesh fixture has golden output", () => {
  assert.ok(meshes.length >= 2);
  if (update) {
    for (const dir of existsSync(goldenRoot) ? readdirSync(goldenRoot) : []) {
      if (!meshes.includes(`${dir}.yaml`)) rmSync(join(goldenRoot, dir), { recursive: true });
    }
  }
  for (const m of meshes) {
    const dir = join(goldenRoot, basename(m, ".yaml"));
    if (update && existsSync(dir)) {
      for (const f of readdirSync(dir)) if (!(RENDER_FORMATS as readonly string[]).includes(f)) rmSync(join(dir, f), { recursive: true });
    }
    assert.ok(update || existsSync(dir), `no golden files for ${m}: run UPDATE_GOLDEN=1 npm test -- golden`);
  }
});

for (const m of meshes) for (const format of RENDER_FORMATS) {
  test(`rendered ${format} files for ${m} match the golden files`, () => {
    const mesh = parseMesh(readFileSync(join(fixtures, m), "utf8"), m);
    const dir = join(goldenRoot, basename(m, ".yaml"), format);
    for (const r of renderMesh(mesh, { ...opts, format })) expectGolden(join(dir, r.file), JSON.parse(r.json) as unknown);
    const orphans = pruneGoldens(dir);
    assert.ok(update || orphans.length === 0, `golden files no node renders: ${orphans.join(", ")} (UPDATE_GOLDEN=1 npm test -- golden removes them)`);
  });
}

test.run();
