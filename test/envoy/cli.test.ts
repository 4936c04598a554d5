// `meshkey validate` and `meshkey diff` through bin/meshkey.js: output and exit codes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "meshkey-envoy-cli-"));
const good = join(dir, "good.json");
const bad = join(dir, "bad.json");
const broken = join(dir, "broken.yaml");
const changed = join(dir, "changed.json");

function meshkey(...args: string[]) {
  return spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
}

test.before(() => {
  const base = JSON.parse(readFileSync("fixtures/envoy/static-bootstrap.json", "utf8"));
  writeFileSync(good, JSON.stringify(base));
  const b = structuredClone(base);
  b.static_resources.clusters[0].connect_timeout = "0s";
  writeFileSync(bad, JSON.stringify(b));
  writeFileSync(broken, "node:\n  id: [\n");
  const c = structuredClone(base);
  c.static_resources.clusters[0].connect_timeout = "2s";
  writeFileSync(changed, JSON.stringify(c));
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test("validate: a valid file exits 0 and says what it is", () => {
  const r = meshkey("validate", good, "fixtures/envoy/seeds-slide-cluster-v3.yaml");
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /good\.json: valid bootstrap/);
});

test("validate: an invalid file exits 1 and prints FILE: path: message", () => {
  const r = meshkey("validate", good, bad);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stdout, `${bad}: static_resources.clusters[0].connect_timeout: must be greater than 0s`);
});

test("validate: an unparseable file exits 2 naming file and line", () => {
  const r = meshkey("validate", bad, broken);
  assert.is(r.status, 2);
  assert.match(r.stderr, new RegExp(`${broken.replace(/[.]/g, "\\.")}:\\d+:\\d+: invalid YAML`));
  assert.match(r.stdout, /connect_timeout/); // the other file is still checked
});

test("validate: no file is a usage error (exit 2)", () => {
  assert.is(meshkey("validate").status, 2);
});

test("diff: same configs exit 0, different exit 1 with the changed path", () => {
  const same = meshkey("diff", good, good);
  assert.is(same.status, 0, same.stderr);
  const diff = meshkey("diff", good, changed);
  assert.is(diff.status, 1, diff.stderr);
  assert.is(diff.stdout, 'Cluster/backend\n  connect_timeout: "1s" → "2s"\n');
});

test("diff --json prints the changes for machines", () => {
  const r = meshkey("diff", "--json", good, changed);
  assert.is(r.status, 1);
  assert.equal(JSON.parse(r.stdout), { same: false, changes: [{ resource: "Cluster/backend", path: "connect_timeout", a: "1s", b: "2s" }] });
});

test("diff: an unreadable or invalid side exits 2", () => {
  assert.is(meshkey("diff", good, join(dir, "missing.json")).status, 2);
  const r = meshkey("diff", good, broken);
  assert.is(r.status, 2);
  assert.match(r.stderr, /invalid YAML/);
});

test.run();
