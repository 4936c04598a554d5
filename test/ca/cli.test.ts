// `meshkey token` and `meshkey ca init|show` through the real CLI.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { createJwtAuthenticator, readCertificateInfo } from "../../src/ca/index.js";
import { openssl, tempDir } from "./helpers.js";

const dir = tempDir();
test.after(() => dir.remove());

function meshkey(...args: string[]) {
  return spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
}

test("ca init creates a root (mode 0600), prints its fingerprint, and a second init keeps it", () => {
  const stateDir = join(dir.path, "s1");
  const first = meshkey("ca", "init", "--state-dir", stateDir, "--trust-domain", "example.org");
  assert.is(first.status, 0, first.stderr);
  assert.match(first.stdout, /^created root .*root-cert\.pem/);
  const pem = readFileSync(join(stateDir, "root-cert.pem"), "utf8");
  const fp = readCertificateInfo(pem).fingerprintSha256;
  assert.ok(first.stdout.includes(`sha256 Fingerprint=${fp}`));
  assert.is(statSync(join(stateDir, "root-key.pem")).mode & 0o777, 0o600);
  assert.match(openssl(["x509", "-noout", "-subject"], pem).out, /O ?= ?example\.org/);
  const again = meshkey("ca", "init", "--state-dir", stateDir);
  assert.is(again.status, 0);
  assert.match(again.stdout, /^kept existing root/);
  assert.ok(again.stdout.includes(fp));
});

test("ca init --key-type rsa-2048 makes an RSA root; ca show prints exactly that PEM", () => {
  const stateDir = join(dir.path, "s2");
  assert.is(meshkey("ca", "init", "--state-dir", stateDir, "--key-type", "rsa-2048").status, 0);
  const show = meshkey("ca", "show", "--state-dir", stateDir);
  assert.is(show.status, 0, show.stderr);
  assert.is(show.stdout, readFileSync(join(stateDir, "root-cert.pem"), "utf8"));
  assert.match(openssl(["x509", "-noout", "-text"], show.stdout).out, /Public-Key: \(2048 bit\)[\s\S]*rsaEncryption|rsaEncryption[\s\S]*2048 bit/);
});

const usageErrors: Array<[string, string[], RegExp]> = [
  ["ca without subcommand", ["ca"], /missing subcommand: init or show/],
  ["ca with an unknown subcommand", ["ca", "rotate"], /unknown subcommand "rotate"/],
  ["ca init with a bad key type", ["ca", "init", "--key-type", "dsa"], /--key-type must be ec-p256 or rsa-2048/],
  ["token without namespace", ["token", "--service-account", "x"], /--namespace is required/],
  ["token without service account", ["token", "--namespace", "x"], /--service-account is required/],
  ["token with a bad ttl", ["token", "-n", "a", "-s", "b", "--ttl", "soon"], /--ttl: "soon" is not a duration/],
  ["token with an unknown flag", ["token", "--bogus"], /bogus/],
];
for (const [what, args, message] of usageErrors) {
  test(`${what} is a usage error (exit 2) that says why`, () => {
    const r = meshkey(...args, "--state-dir", join(dir.path, "unused"));
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  });
}

test("ca show without a root exits 1 and says how to create one", () => {
  const r = meshkey("ca", "show", "--state-dir", join(dir.path, "empty"));
  assert.is(r.status, 1);
  assert.match(r.stderr, /no root in .*meshkey ca init/);
});

test("token prints a JWT that verifies against <state-dir>/jwks.json with the requested identity, ttl and audience", async () => {
  const stateDir = join(dir.path, "s3");
  const r = meshkey("token", "--namespace", "foo", "--service-account", "httpbin", "--ttl", "2h", "--audience", "meshkey-test", "--state-dir", stateDir);
  assert.is(r.status, 0, r.stderr);
  const token = r.stdout.trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
  assert.is(claims.exp - claims.iat, 7200);
  const a = createJwtAuthenticator({ jwks: { file: join(stateDir, "jwks.json") }, audience: "meshkey-test", issuer: claims.iss });
  const caller = await a.authenticate(token);
  assert.is(caller.namespace, "foo");
  assert.is(caller.serviceAccount, "httpbin");
  assert.is(statSync(join(stateDir, "dev-issuer-key.pem")).mode & 0o777, 0o600);
});

test("ca --help and token --help show an example", () => {
  for (const verb of ["ca", "token"]) {
    const r = meshkey(verb, "--help");
    assert.is(r.status, 0);
    assert.match(r.stdout, /Example/);
  }
});

test.run();
