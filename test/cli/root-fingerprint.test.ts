// One root fingerprint format everywhere: what `openssl x509 -noout -fingerprint
// -sha256` prints (upper-case hex pairs joined by colons), in the serve banner,
// `ca init`, `ca show` and /debug/sds.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isolatedServeArgs, startServeProcess, type ServeProcess } from "../support/serve-process.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-fingerprint-"));
const stateDir = join(dir, "state");
const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });

/** openssl's fingerprint of the root in the state dir: the reference. */
function opensslFingerprint(): string {
  const r = spawnSync("openssl", ["x509", "-in", join(stateDir, "root-cert.pem"), "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  const fp = /Fingerprint=([0-9A-F:]+)$/m.exec(r.stdout)?.[1];
  assert.ok(fp, r.stdout);
  return fp;
}

let serve: ServeProcess | undefined;
test.before(() => {
  const init = meshkey("ca", "init", "--state-dir", stateDir);
  assert.is(init.status, 0, init.stderr);
});
test.after(async () => {
  await serve?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("ca init prints the root's fingerprint as openssl does", () => {
  const r = meshkey("ca", "init", "--state-dir", stateDir);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, `sha256 Fingerprint=${opensslFingerprint()}\n`);
});

test("ca show prints the PEM on stdout and openssl's fingerprint on stderr", () => {
  const r = meshkey("ca", "show", "--state-dir", stateDir);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^-----BEGIN CERTIFICATE-----\n[\s\S]*-----END CERTIFICATE-----\n$/);
  assert.is(r.stderr, `sha256 Fingerprint=${opensslFingerprint()}\n`);
});

test("the serve banner and /debug/sds show the root's fingerprint as openssl does", async () => {
  serve = await startServeProcess([...isolatedServeArgs(dir)]);
  const expected = opensslFingerprint();
  assert.is(serve.rootFingerprint, expected, serve.stdout());
  const sds = (await (await fetch(`http://${serve.admin}/debug/sds`)).json()) as { rootFingerprint?: string };
  assert.is(sds.rootFingerprint, expected);
});

test.run();
