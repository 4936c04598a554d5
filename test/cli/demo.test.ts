// `meshkey demo` is the seeds' verification; it must pass as a user runs it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";

test("meshkey demo --rotate prints the seeds' four 200 lines, finds no workload key file, refuses an intruder, rotates with zero failures", () => {
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "demo", "--rotate"], { encoding: "utf8", timeout: 90_000 });
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const lines = r.stdout.split("\n");
  assert.equal(lines.slice(0, 4), [
    "sleep.foo to httpbin.foo: 200",
    "sleep.foo to httpbin.bar: 200",
    "sleep.bar to httpbin.foo: 200",
    "sleep.bar to httpbin.bar: 200",
  ]);
  assert.match(r.stdout, /private keys on disk: state\/dev-issuer-key\.pem, state\/root-key\.pem/);
  assert.match(r.stdout, /no workload key or certificate file/);
  assert.match(r.stdout, /intruder\.baz to httpbin\.foo: refused/);
  assert.match(r.stdout, /posing as httpbin: TLS failure: server identity spiffe:\/\/cluster\.local\/ns\/baz\/sa\/intruder is not allowed/);
  assert.match(r.stdout, /httpbin\.foo: served with [2-9]\d* certificate\(s\) \(rotated without restart\)/);
  assert.match(r.stdout, /\d+ requests, 0 failed/);
  assert.match(r.stdout, /demo passed/);
  assert.match(r.stdout, /meshkey demo --envoy/, "the plain demo points at the real-Envoy one");
});

test("meshkey demo --envoy without an Envoy binary says how to get one and exits non-zero", () => {
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "demo", "--envoy"], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, ENVOY_BIN: "/nonexistent/envoy" },
  });
  assert.is(r.status, 1, `${r.stdout}\n${r.stderr}`);
  assert.is(r.stdout, "");
  assert.match(r.stderr, /ENVOY_BIN=\/nonexistent\/envoy is not an executable file/);
  assert.match(r.stderr, /bash scripts\/install-envoy\.sh/);
  assert.match(r.stderr, /ENVOY_BIN/);
});

test("meshkey demo --help shows the --envoy example", () => {
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "demo", "--help"], { encoding: "utf8", timeout: 30_000 });
  assert.is(r.status, 0);
  assert.match(r.stdout, /meshkey demo --envoy --rotate/);
});

test.run();
