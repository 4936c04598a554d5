// The verbs work together: what `meshkey render` writes (meshkey's snapshot form,
// also served at /debug/config_dump) is what `meshkey validate` checks and
// `meshkey diff` compares.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "meshkey-rvd-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });

test("every rendered node validates, a broken field is named by its path, and two nodes diff by resource", () => {
  const out = join(dir, "render");
  const r = meshkey("render", "--out", out);
  assert.is(r.status, 0, r.stderr);
  const files = readdirSync(out).map((f) => join(out, f));
  assert.ok(files.length >= 5, `rendered ${files.length} files`);

  const ok = meshkey("validate", ...files);
  assert.is(ok.status, 0, ok.stdout + ok.stderr);

  const sleepFoo = files.find((f) => f.endsWith("sidecar-sleep-0.foo.json"))!;
  const doc = JSON.parse(readFileSync(sleepFoo, "utf8"));
  const clusters = doc.resources["type.googleapis.com/envoy.config.cluster.v3.Cluster"].resources;
  clusters[0].name = "";
  const broken = join(dir, "broken.json");
  writeFileSync(broken, JSON.stringify(doc));
  const bad = meshkey("validate", broken);
  assert.is(bad.status, 1);
  assert.match(bad.stdout + bad.stderr, /resources\["type\.googleapis\.com\/envoy\.config\.cluster\.v3\.Cluster"\]\.resources\[0\]\.name: /);

  const same = meshkey("diff", sleepFoo, sleepFoo);
  assert.is(same.status, 0, same.stdout + same.stderr);
  const d = meshkey("diff", sleepFoo, files.find((f) => f.endsWith("sidecar-sleep-0.bar.json"))!);
  assert.is(d.status, 1, d.stderr);
  assert.match(d.stdout, /^Listener\/inbound_.* only in A$/m);
});

test.run();
