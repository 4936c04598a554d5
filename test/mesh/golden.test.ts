// Golden files: for each fixtures/mesh/*.yaml, what `meshkey render --format F` writes
// per node lives in fixtures/mesh/golden/<mesh>/<F>/ (config-dump, bootstrap).
// UPDATE_GOLDEN=1 npm test -- golden rewrites them and removes orphans; a mismatch
// prints a per-path diff of the JSON.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseMesh } from "../../src/mesh/index.js";
import { RENDER_FORMATS, renderMesh } from "../../src/xds/index.js";

const update = process.env.UPDATE_GOLDEN === "1";
const fixtures = "fixtures/mesh";
const goldenRoot = join(fixtures, "golden");
const opts = { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" };

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function flatten(value: Json, path: string, out: Map<string, string>): Map<string, string> {
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [`[${i}]`, v] as const) : Object.entries(value).map(([k, v]) => [`.${k}`, v] as const);
    if (entries.length === 0) out.set(path, JSON.stringify(value));
    for (const [k, v] of entries) flatten(v, path + k, out);
  } else out.set(path, JSON.stringify(value));
  return out;
}

/** A compact diff: one line per JSON path that differs (at most `max`). */
export function jsonPathDiff(expected: Json, actual: Json, max = 25): string[] {
  const e = flatten(expected, "$", new Map());
  const a = flatten(actual, "$", new Map());
  const lines: string[] = [];
  for (const [p, v] of e) if (!a.has(p)) lines.push(`- ${p}: ${v}`);
  else if (a.get(p) !== v) lines.push(`~ ${p}: ${v} → ${a.get(p)}`);
  for (const [p, v] of a) if (!e.has(p)) lines.push(`+ ${p}: ${v}`);
  return lines.length > max ? [...lines.slice(0, max), `… and ${lines.length - max} more`] : lines;
}

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
    const rendered = renderMesh(mesh, { ...opts, format });
    if (update) {
      mkdirSync(dir, { recursive: true });
      const names = new Set(rendered.map((r) => r.file));
      for (const f of readdirSync(dir)) if (!names.has(f)) rmSync(join(dir, f));
      for (const r of rendered) writeFileSync(join(dir, r.file), r.json);
      return;
    }
    const problems: string[] = [];
    const expectedFiles = readdirSync(dir).sort();
    const actualFiles = rendered.map((r) => r.file).sort();
    if (JSON.stringify(expectedFiles) !== JSON.stringify(actualFiles)) problems.push(`files: expected ${expectedFiles.join(", ")}; got ${actualFiles.join(", ")}`);
    for (const r of rendered) {
      const path = join(dir, r.file);
      if (!existsSync(path)) continue;
      const want = readFileSync(path, "utf8");
      if (want === r.json) continue;
      const diff = jsonPathDiff(JSON.parse(want) as Json, JSON.parse(r.json) as Json);
      problems.push(`${path}:\n  ${diff.length ? diff.join("\n  ") : "(formatting only)"}`);
    }
    if (problems.length) assert.unreachable(`golden mismatch (UPDATE_GOLDEN=1 npm test -- golden to accept):\n${problems.join("\n")}`);
  });
}

test("the golden diff names each differing path, not the whole file", () => {
  const diff = jsonPathDiff({ a: { b: [1, 2] }, c: "x" }, { a: { b: [1, 3] }, d: true });
  assert.equal(diff, ["~ $.a.b[1]: 2 → 3", "- $.c: \"x\"", "+ $.d: true"]);
});

test.run();
