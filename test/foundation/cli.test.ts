// The meshkey CLI dispatches verbs and answers --help on each.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";

function meshkey(...args: string[]) {
  return spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
}

test("meshkey --help lists every verb and exits 0", () => {
  const r = meshkey("--help");
  assert.is(r.status, 0, r.stderr);
  for (const verb of ["serve", "token", "ca", "bootstrap", "render", "validate", "diff", "demo"]) {
    assert.match(r.stdout, new RegExp(`\\n  ${verb}\\s`));
  }
});

test("an unknown verb is a usage error (exit 2) that names it", () => {
  const r = meshkey("frobnicate");
  assert.is(r.status, 2);
  assert.match(r.stderr, /unknown command "frobnicate"/);
});

test.run();
