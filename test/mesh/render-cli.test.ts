// `meshkey render` writes, per node, the golden-equal config dump (default) or
// static bootstrap for a mesh file.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", "render", ...args], { encoding: "utf8", timeout: 60_000 });
const dir = mkdtempSync(join(tmpdir(), "meshkey-render-"));

for (const [format, args] of [["config-dump", []], ["config-dump", ["--format", "config-dump"]], ["bootstrap", ["--format", "bootstrap"]]] as const) {
  test(`meshkey render --mesh ${args.join(" ") || "(no --format)"} writes one ${format} file per node, equal to the golden files`, () => {
    const out = join(dir, `modes-${format}-${args.length}`);
    const golden = join("fixtures/mesh/golden/modes", format);
    const r = meshkey("--mesh", "fixtures/mesh/modes.yaml", "--out", out, ...args);
    assert.is(r.status, 0, r.stderr);
    const files = readdirSync(out).sort();
    assert.equal(files, readdirSync(golden).sort());
    for (const f of files) assert.is(readFileSync(join(out, f), "utf8"), readFileSync(join(golden, f), "utf8"), f);
  });
}

test("a config dump is Envoy's ConfigDump; a bootstrap has the node, an admin on 127.0.0.1 and only static resources", () => {
  const out = join(dir, "forms");
  assert.is(meshkey("--out", join(out, "dump")).status, 0);
  const r = meshkey("--out", join(out, "static"), "--format", "bootstrap", "--admin-port", "19001");
  assert.is(r.status, 0, r.stderr);
  const dump = JSON.parse(readFileSync(join(out, "dump", "sidecar-sleep-0.foo.json"), "utf8")) as { configs: Array<Record<string, unknown>> };
  assert.equal(
    dump.configs.map((c) => c["@type"]),
    ["Bootstrap", "Clusters", "Endpoints", "Listeners", "ScopedRoutes", "Routes", "Secrets"].map((t) => `type.googleapis.com/envoy.admin.v3.${t}ConfigDump`),
  );
  const boot = JSON.parse(readFileSync(join(out, "static", "sidecar-sleep-0.foo.json"), "utf8")) as Record<string, any>;
  assert.equal(Object.keys(boot).sort(), ["admin", "node", "static_resources"]);
  assert.equal(boot.admin.address.socket_address, { address: "127.0.0.1", port_value: 19001 });
  assert.is(boot.node.id, "sidecar~127.0.1.2~sleep-0.foo~foo.svc.cluster.local");
  assert.not.match(JSON.stringify(boot), /"ads"|"rds"|"EDS"/);
  assert.ok(!readdirSync(join(out, "static")).includes("proxyless-grpc.json"), "a proxyless client is no Envoy: no bootstrap");
});

test("meshkey render without --mesh renders the built-in sample mesh", () => {
  const out = join(dir, "sample");
  const r = meshkey("--out", out);
  assert.is(r.status, 0, r.stderr);
  assert.equal(readdirSync(out).sort(), readdirSync("fixtures/mesh/golden/sample/config-dump").sort());
});

test("meshkey render --help shows an example; a missing --out is a usage error (exit 2)", () => {
  const h = meshkey("--help");
  assert.is(h.status, 0);
  assert.match(h.stdout, /Example:\n\s+meshkey render --mesh/);
  const u = meshkey();
  assert.is(u.status, 2);
  assert.match(u.stderr, /--out DIR is required/);
  const f = meshkey("--out", join(dir, "y"), "--format", "yaml");
  assert.is(f.status, 2);
  assert.match(f.stderr, /--format must be config-dump or bootstrap/);
});

test("meshkey render reports an invalid mesh with file, line and path (exit 1)", () => {
  const r = meshkey("--mesh", "test/mesh/../../fixtures/mesh/does-not-exist.yaml", "--out", join(dir, "x"));
  assert.is(r.status, 1);
  assert.match(r.stderr, /does-not-exist\.yaml: cannot read/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
