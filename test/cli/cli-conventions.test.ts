// CLI conventions a new user meets in the first hour: --version, "did you mean",
// usage errors that exit 2 and name the flag, EADDRINUSE naming the flag, `validate -`,
// and `npm test -- NAME` selecting test files by exact name.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isolatedServeArgs } from "../support/serve-process.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-cli-conv-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const meshkey = (args: string[], input?: string) =>
  spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000, ...(input !== undefined ? { input } : {}) });
const sidecar = ["bootstrap", "--role", "sidecar", "--node-id", "sidecar~127.100.0.1~sleep-0.foo~foo.svc.cluster.local"];

test("meshkey --version prints the package version", () => {
  const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
  const r = meshkey(["--version"]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^meshkey ${version.replace(/\./g, "\\.")} `));
});

test("a mistyped verb exits 2 and suggests the verb meant", () => {
  const r = meshkey(["proxy-stats"]);
  assert.is(r.status, 2);
  assert.match(r.stderr, 'unknown command "proxy-stats" (did you mean proxy-status?)');
});

test("a mistyped flag exits 2 and suggests the flag meant", () => {
  const r = meshkey(["serve", "--xds-lisen", "127.0.0.1:0"]);
  assert.is(r.status, 2);
  assert.match(r.stderr, "unknown flag --xds-lisen (did you mean --xds-listen?)");
});

test("a bad --xds-address exits 2 and names the flag, not an internal option name", () => {
  const r = meshkey([...sidecar, "--xds-address", "nope"]);
  assert.is(r.status, 2, r.stderr);
  assert.match(r.stderr, '--xds-address "nope" is not host:port');
  assert.not.match(r.stderr, "xdsAddress");
});

test("an unreadable --config file exits 2 naming --config", () => {
  const r = meshkey(["serve", "--config", join(dir, "missing.yaml")]);
  assert.is(r.status, 2);
  assert.match(r.stderr, `--config ${join(dir, "missing.yaml")}: cannot read`);
});

test("an admin address already in use is reported under --admin-listen", async () => {
  const busy: Server = createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
  const port = (busy.address() as { port: number }).port;
  try {
    const r = spawnSync(process.execPath, ["bin/meshkey.js", "serve", "--log-level", "silent", ...isolatedServeArgs(dir), "--admin-listen", `127.0.0.1:${port}`], {
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr, `--admin-listen 127.0.0.1:${port}: address already in use`);
  } finally {
    await new Promise((r) => busy.close(r));
  }
});

test("validate - reads the config from standard input", () => {
  const bootstrap = meshkey(sidecar);
  assert.is(bootstrap.status, 0, bootstrap.stderr);
  const ok = meshkey(["validate", "-"], bootstrap.stdout);
  assert.is(ok.status, 0, ok.stderr);
  assert.is(ok.stdout, "(stdin): valid bootstrap\n");
  const bad = meshkey(["validate", "-"], '{"admin": {"nope": 1}}');
  assert.is(bad.status, 1);
  assert.match(bad.stdout, /^\(stdin\): admin\.nope: unknown field/m);
});

const selected = (...filters: string[]) =>
  spawnSync(process.execPath, ["scripts/run-tests.mjs", "--list", ...filters], { encoding: "utf8" }).stdout.trim().split("\n");

test("npm test -- NAME runs the file of that exact name, not every file containing it", () => {
  assert.equal(selected("serve"), ["test/cli/serve.test.ts"]);
  assert.equal(selected("test/cli/serve-banner.test.ts"), ["test/cli/serve-banner.test.ts"]);
});

test("npm test -- DIR runs every file under it, and a trailing * matches by substring", () => {
  const cli = selected("test/cli");
  assert.ok(cli.length > 3 && cli.every((f) => f.startsWith("test/cli/")), cli.join(" "));
  const star = selected("serve*");
  assert.ok(star.includes("test/cli/serve.test.ts") && star.includes("test/cli/serve-banner.test.ts"), star.join(" "));
});

test.run();
