// The state dir as an operator finds it: too open permissions are refused (as OpenSSH refuses
// them), a lost dev issuer key is never silently replaced, a corrupted root never starts and
// never gets a new root minted over it, and a read-only dir holding everything is usable by serve.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  DEV_JWKS_FILE,
  ROOT_CERT_FILE,
  ROOT_KEY_FILE,
  StateDirError,
  createJwtAuthenticator,
  openCertificateAuthority,
  openDevTokenIssuer,
  readCertificateInfo,
} from "../../src/ca/index.js";
import { DEV_ISSUER_KEY_FILE } from "../../src/ca/dev-token-issuer.js";
import { isolatedServeArgs } from "../support/serve-process.js";
import { exitWithin, mountNamespaceUnavailable, spawnRaw, type RawChild } from "../reliability/support/fault-helpers.js";
import { SdsTestClient, pemBlocks, secretsOf, tlsOf } from "../sds/sds-harness.js";
import { openssl, tempDir } from "./helpers.js";

const dirs: Array<{ remove(): void }> = [];
function fresh(): { base: string; state: string } {
  const d = tempDir("meshkey-state-");
  dirs.push(d);
  return { base: d.path, state: join(d.path, "state") };
}
test.after(() => dirs.forEach((d) => d.remove()));

function meshkey(...args: string[]) {
  return spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
}

/** Every file of a dir and its bytes, to show that nothing was written, replaced or minted. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f), "base64")]));
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(() => undefined, (e: Error) => e);
  if (!err) assert.unreachable("accepted");
  return err!;
}

// ------------------------------------------------ permissions

const openDirs: Array<[string, number, RegExp]> = [
  ["group-writable (0770)", 0o770, /writable by its group \(mode 0770\)/],
  ["writable by others (0703)", 0o703, /writable by others \(mode 0703\)/],
  ["world-writable (0777)", 0o777, /writable by its group \(mode 0777\)/],
  ["world-writable with the sticky bit, like /tmp (1777)", 0o1777, /mode 01777/],
];
for (const [what, mode, message] of openDirs) {
  test(`a ${what} state dir is refused, naming the dir and the fix; no root or issuer key is written`, async () => {
    const { state } = fresh();
    mkdirSync(state);
    chmodSync(state, mode);
    for (const open of [() => openCertificateAuthority({ stateDir: state, trustDomain: "cluster.local" }), () => openDevTokenIssuer(state)]) {
      const err = await refusal(open());
      assert.instance(err, StateDirError);
      assert.match(err.message, message);
      assert.ok(err.message.includes(`state dir ${state} `), err.message);
      assert.match(err.message, /chmod go-w/);
    }
    assert.equal(readdirSync(state), []);
  });
}

test("state dirs that only the owner can write (0700, 0750, 0755) are used", async () => {
  for (const mode of [0o700, 0o750, 0o755]) {
    const { state } = fresh();
    mkdirSync(state);
    chmodSync(state, mode);
    await openCertificateAuthority({ stateDir: state, trustDomain: "cluster.local" });
    await openDevTokenIssuer(state);
    assert.is(statSync(state).mode & 0o7777, mode, "the mode is left as the operator set it");
  }
});

test("meshkey ca init in a group-writable state dir exits 1 naming the dir", () => {
  const { state } = fresh();
  mkdirSync(state);
  chmodSync(state, 0o775);
  const r = meshkey("ca", "init", "--state-dir", state);
  assert.is(r.status, 1, r.stderr);
  assert.ok(r.stderr.includes(state), r.stderr);
  assert.match(r.stderr, /writable by its group \(mode 0775\)/);
  assert.equal(readdirSync(state), []);
});

const openKeys: Array<[string, string, number]> = [
  ["the root key", ROOT_KEY_FILE, 0o644],
  ["the root key", ROOT_KEY_FILE, 0o640],
  ["the root key", ROOT_KEY_FILE, 0o604],
  ["the root key", ROOT_KEY_FILE, 0o620],
  ["the dev issuer key", DEV_ISSUER_KEY_FILE, 0o644],
  ["the dev issuer key", DEV_ISSUER_KEY_FILE, 0o640],
];
for (const [what, file, mode] of openKeys) {
  test(`${what} with mode 0${mode.toString(8)} (group or others may read it) is refused and left as it is`, async () => {
    const { state } = fresh();
    await openCertificateAuthority({ stateDir: state, trustDomain: "cluster.local" });
    await openDevTokenIssuer(state);
    chmodSync(join(state, file), mode);
    const before = snapshot(state);
    const open = file === ROOT_KEY_FILE ? openCertificateAuthority({ stateDir: state, trustDomain: "cluster.local" }) : openDevTokenIssuer(state);
    const err = await refusal(open);
    assert.instance(err, StateDirError);
    assert.ok(err.message.includes(`private key ${join(state, file)} is accessible by group or others (mode 0${mode.toString(8)})`), err.message);
    assert.match(err.message, /chmod 600/);
    assert.equal(snapshot(state), before, "nothing replaced");
    assert.is(statSync(join(state, file)).mode & 0o777, mode, "not tightened behind the operator's back");
  });
}

test("serve refuses a root key readable by others: exit 1 naming the key, no ready summary", () => {
  const { base, state } = fresh();
  mkdirSync(state, { mode: 0o700 });
  assert.is(meshkey("ca", "init", "--state-dir", state).status, 0);
  chmodSync(join(state, ROOT_KEY_FILE), 0o644);
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "serve", "--log-level", "warn", ...isolatedServeArgs(base)], { encoding: "utf8", timeout: 30_000 });
  assert.is(r.status, 1, r.stderr);
  assert.ok(r.stderr.includes(join(state, ROOT_KEY_FILE)), r.stderr);
  assert.match(r.stderr, /accessible by group or others \(mode 0644\)/);
  assert.not.match(r.stdout, /is ready/);
});

// ------------------------------------------------ the dev issuer's key

test("a dev issuer whose key is lost while jwks.json exists is refused: no new key, jwks.json unchanged", async () => {
  const { state } = fresh();
  const issuer = await openDevTokenIssuer(state);
  const issued = await issuer.mint({ namespace: "foo", serviceAccount: "httpbin" });
  unlinkSync(join(state, DEV_ISSUER_KEY_FILE));
  const before = snapshot(state);
  const err = await refusal(openDevTokenIssuer(state));
  assert.instance(err, StateDirError);
  assert.ok(err.message.includes(`the dev issuer key ${join(state, DEV_ISSUER_KEY_FILE)} is missing but ${join(state, DEV_JWKS_FILE)} exists`), err.message);
  assert.match(err.message, /invalidate every token already issued/);
  assert.equal(snapshot(state), before);
  // the token issued before still verifies against the jwks.json on disk
  const verifier = createJwtAuthenticator({ jwks: { file: join(state, DEV_JWKS_FILE) }, issuer: issuer.issuer });
  assert.is((await verifier.authenticate(issued)).serviceAccount, "httpbin");
});

test("meshkey token with a lost dev issuer key exits 1 and prints no token", async () => {
  const { state } = fresh();
  await openDevTokenIssuer(state);
  unlinkSync(join(state, DEV_ISSUER_KEY_FILE));
  const r = meshkey("token", "-n", "foo", "-s", "httpbin", "--state-dir", state);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /dev issuer key .* is missing but .*jwks\.json exists/);
  assert.is(r.stdout, "");
});

test("deleting jwks.json as well starts a new dev issuer (the documented way out)", async () => {
  const { state } = fresh();
  const old = await openDevTokenIssuer(state);
  unlinkSync(join(state, DEV_ISSUER_KEY_FILE));
  unlinkSync(join(state, DEV_JWKS_FILE));
  const renewed = await openDevTokenIssuer(state);
  assert.is.not(renewed.jwks.keys[0]!.kid, old.jwks.keys[0]!.kid);
});

test("four dev issuers opening one empty state dir at once share one key", async () => {
  const { state } = fresh();
  const issuers = await Promise.all(Array.from({ length: 4 }, () => openDevTokenIssuer(state)));
  assert.is(new Set(issuers.map((i) => i.jwks.keys[0]!.kid)).size, 1);
});

// ------------------------------------------------ a corrupted root

const validRoot = async () => {
  const { base, state } = fresh();
  await openCertificateAuthority({ stateDir: state, trustDomain: "cluster.local" });
  return { base, state };
};
const corruptions: Array<[string, string, (text: string) => string, RegExp]> = [
  ["a truncated root certificate", ROOT_CERT_FILE, (t) => t.slice(0, t.length / 2), /cannot read the root certificate/],
  ["an empty root certificate", ROOT_CERT_FILE, () => "", /cannot read the root certificate/],
  ["a root certificate with flipped bytes", ROOT_CERT_FILE, (t) => t.replace(/\n(.)(.)/, "\n$2$1"), /cannot read the root certificate/],
  ["a truncated root key", ROOT_KEY_FILE, (t) => t.slice(0, t.length / 2), /cannot read the root key/],
  ["an empty root key", ROOT_KEY_FILE, () => "", /cannot read the root key/],
  ["a root key that is not PEM", ROOT_KEY_FILE, () => "not a key\n", /cannot read the root key/],
];
for (const [what, file, corrupt, message] of corruptions) {
  test(`${what} is refused naming the file, and no new root is minted over it`, async () => {
    const { state } = await validRoot();
    writeFileSync(join(state, file), corrupt(readFileSync(join(state, file), "utf8")));
    const before = snapshot(state);
    const err = await refusal(openCertificateAuthority({ stateDir: state, trustDomain: "cluster.local" }));
    assert.instance(err, StateDirError);
    assert.ok(err.message.includes(join(state, file)), err.message);
    assert.match(err.message, message);
    assert.match(err.message, /never minted/);
    assert.equal(snapshot(state), before, "the corrupted files are kept for the operator; nothing added");
  });
}

test("serve on a corrupted root certificate exits 1 naming it, and the files stay as they were", () => {
  const { base, state } = fresh();
  mkdirSync(state, { mode: 0o700 });
  assert.is(meshkey("ca", "init", "--state-dir", state).status, 0);
  writeFileSync(join(state, ROOT_CERT_FILE), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  const before = snapshot(state);
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "serve", "--log-level", "warn", ...isolatedServeArgs(base)], { encoding: "utf8", timeout: 30_000 });
  assert.is(r.status, 1, r.stderr);
  assert.ok(r.stderr.includes(join(state, ROOT_CERT_FILE)), r.stderr);
  assert.not.match(r.stdout, /is ready/);
  assert.equal(snapshot(state), before);
});

// ------------------------------------------------ ca init and the trust domain

test("ca init --trust-domain X on a root of another trust domain exits 1 naming both, and keeps the root", () => {
  const { state } = fresh();
  assert.is(meshkey("ca", "init", "--state-dir", state, "--trust-domain", "example.org").status, 0);
  const before = snapshot(state);
  const r = meshkey("ca", "init", "--state-dir", state, "--trust-domain", "other.example");
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /root-cert\.pem is the root of trust domain "example\.org", not "other\.example"/);
  assert.is(r.stdout, "");
  assert.equal(snapshot(state), before);
});

test("ca init --trust-domain X on a root of X keeps it and exits 0", () => {
  const { state } = fresh();
  const first = meshkey("ca", "init", "--state-dir", state, "--trust-domain", "example.org");
  const again = meshkey("ca", "init", "--state-dir", state, "--trust-domain", "example.org");
  assert.is(again.status, 0, again.stderr);
  assert.match(again.stdout, /^kept existing root/);
  assert.is(/sha256 fingerprint (\S+)/.exec(again.stdout)?.[1], /sha256 fingerprint (\S+)/.exec(first.stdout)?.[1]);
});

// ------------------------------------------------ a read-only state dir

/** Resolves once `re` matches the child's stdout; rejects if it exits first or after ms. */
function outputMatches(c: RawChild, re: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no ${re} within ${ms} ms\nstdout: ${c.out()}\nstderr: ${c.err()}`)), ms);
    const check = () => re.test(c.out()) && done();
    const exited = () => done(new Error(`exited before ${re}\nstdout: ${c.out()}\nstderr: ${c.err()}`));
    function done(err?: Error) {
      clearTimeout(timer);
      c.child.stdout!.off("data", check);
      c.child.off("exit", exited);
      if (err) reject(err);
      else resolve();
    }
    c.child.stdout!.on("data", check);
    c.child.once("exit", exited);
    check();
  });
}

const noMounts = mountNamespaceUnavailable();
test("serve on a read-only state dir that holds the root and the dev issuer starts with that root and issues certificates", async () => {
  if (noMounts) {
    console.log(`  SKIPPED: ${noMounts}`);
    return;
  }
  const { base, state } = fresh();
  const seed = join(base, "seed");
  const issuer = await openDevTokenIssuer(seed);
  const ca = await openCertificateAuthority({ stateDir: seed, trustDomain: "cluster.local" });
  mkdirSync(state);
  // a read-only bind mount of the seed on the state dir, in a private mount namespace
  const setup = 'mount --bind "$s" "$d" && mount -o remount,bind,ro "$d" && exec "$@"';
  const c = spawnRaw(
    ["-m", "sh", "-c", `d="$1"; s="$2"; shift 2; ${setup}`, "sh", state, seed, process.execPath, "bin/meshkey.js", "serve", "--log-level", "warn", ...isolatedServeArgs(base)],
    "unshare",
  );
  try {
    await outputMatches(c, /^ {2}admin\s/m, 20_000);
    const printed = /^ {2}root\s+(\S+)/m.exec(c.out())?.[1];
    assert.is(printed, readCertificateInfo(ca.rootCertPem).fingerprintSha256, "the root that was on the disk");
    const client = new SdsTestClient(join(base, "sds", "uds_path"));
    try {
      const token = await issuer.mint({ namespace: "foo", serviceAccount: "httpbin" });
      const [cert] = secretsOf(await client.fetch({ kind: "header", token }, ["default"]));
      const [leaf] = pemBlocks(tlsOf(cert!).chainPem);
      writeFileSync(join(base, "root.pem"), ca.rootCertPem);
      writeFileSync(join(base, "leaf.pem"), leaf!);
      const v = openssl(["verify", "-CAfile", join(base, "root.pem"), join(base, "leaf.pem")]);
      assert.is(v.status, 0, v.out);
      assert.equal(readCertificateInfo(leaf!).uriSans, ["spiffe://cluster.local/ns/foo/sa/httpbin"]);
    } finally {
      client.close();
    }
  } finally {
    c.child.kill("SIGTERM");
    await exitWithin(c, 15_000);
  }
});

test.run();
