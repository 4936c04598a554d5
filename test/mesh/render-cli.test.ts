// `meshkey render` writes the golden-equal resource sets for a mesh file.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", "render", ...args], { encoding: "utf8", timeout: 60_000 });
const dir = mkdtempSync(join(tmpdir(), "meshkey-render-"));

test("meshkey render --mesh writes one file per node, equal to the golden files", () => {
  const out = join(dir, "modes");
  const r = meshkey("--mesh", "fixtures/mesh/modes.yaml", "--out", out);
  assert.is(r.status, 0, r.stderr);
  const files = readdirSync(out).sort();
  assert.equal(files, readdirSync("fixtures/mesh/golden/modes").sort());
  for (const f of files) assert.is(readFileSync(join(out, f), "utf8"), readFileSync(join("fixtures/mesh/golden/modes", f), "utf8"), f);
});

test("meshkey render without --mesh renders the built-in sample mesh", () => {
  const out = join(dir, "sample");
  const r = meshkey("--out", out);
  assert.is(r.status, 0, r.stderr);
  assert.equal(readdirSync(out).sort(), readdirSync("fixtures/mesh/golden/sample").sort());
});

test("meshkey render --help shows an example; a missing --out is a usage error (exit 2)", () => {
  const h = meshkey("--help");
  assert.is(h.status, 0);
  assert.match(h.stdout, /Example:\n\s+meshkey render --mesh/);
  const u = meshkey();
  assert.is(u.status, 2);
  assert.match(u.stderr, /--out DIR is required/);
});

test("meshkey render reports an invalid mesh with file, line and path (exit 1)", () => {
  const r = meshkey("--mesh", "test/mesh/../../fixtures/mesh/does-not-exist.yaml", "--out", join(dir, "x"));
  assert.is(r.status, 1);
  assert.match(r.stderr, /does-not-exist\.yaml: cannot read/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
