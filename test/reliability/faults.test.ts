// Faults a node agent meets in the field: the process SIGKILLed while it issues or
// while it creates its root, a full or read-only state dir at start, and clocks a
// few minutes apart between the token issuer and the CA.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as grpc from "@grpc/grpc-js";
import { existsSync, mkdirSync, readFileSync, readdirSync, watch, writeFileSync } from "node:fs";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { createJwtAuthenticator, openCertificateAuthority, openDevTokenIssuer } from "../../src/ca/index.js";
import { isolatedServeArgs, startServeProcess } from "../support/serve-process.js";
import { SdsTestClient, pemBlocks, secretsOf, sotwRequest, startAgent, tlsOf, trustedCaOf, type TokenSigner } from "../sds/sds-harness.js";
import {
  ROOT_CERT_FILE,
  ROOT_KEY_FILE,
  exitWithin,
  fingerprintOf,
  keyMatchesCert,
  leftovers,
  mountNamespaceUnavailable,
  openssl,
  spawnRaw,
  tempDir,
} from "./support/fault-helpers.js";

const dirs: string[] = [];
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const serveArgv = (dir: string) => ["bin/meshkey.js", "serve", "--log-level", "warn", ...isolatedServeArgs(dir)];

/** Asks the agent at socketPath for default + ROOTCA and checks the chain with openssl verify against rootFile. */
async function issueAndVerify(socketPath: string, token: string, rootFile: string, workDir: string): Promise<void> {
  const client = new SdsTestClient(socketPath);
  try {
    const res = await client.fetch({ kind: "header", token }, ["default", "ROOTCA"]);
    const [cert, root] = secretsOf(res);
    const blocks = pemBlocks(tlsOf(cert!).chainPem);
    assert.is(trustedCaOf(root!).trim(), readFileSync(rootFile, "utf8").trim(), "ROOTCA is the root on disk");
    const leaf = join(workDir, "leaf.pem");
    writeFileSync(leaf, blocks[0]!);
    const args = ["verify", "-CAfile", rootFile];
    if (blocks.length > 2) {
      writeFileSync(join(workDir, "untrusted.pem"), blocks.slice(1, -1).join("\n"));
      args.push("-untrusted", join(workDir, "untrusted.pem"));
    }
    const v = openssl([...args, leaf]);
    assert.is(v.status, 0, `openssl verify: ${v.stdout}${v.stderr}`);
  } finally {
    client.close();
  }
}

test("SIGKILL during 60 concurrent issuances: the restart keeps the same root, its key matches, new chains verify, no leftovers", async () => {
  const dir = tempDir("meshkey-fault-", dirs);
  const state = join(dir, "state");
  const first = await startServeProcess(isolatedServeArgs(dir));
  const fingerprint = first.rootFingerprint;
  const onDisk = fingerprintOf(join(state, ROOT_CERT_FILE));
  const issuer = await openDevTokenIssuer(state);
  const client = new SdsTestClient(first.sds!.replace(/^unix:/, ""));
  let received = 0;
  const streams = await Promise.all(
    Array.from({ length: 60 }, async (_, i) => {
      const s = client.stream({ kind: "header", token: await issuer.mint({ namespace: "load", serviceAccount: `sa-${i}` }) });
      s.call.on("data", () => received++);
      s.send(sotwRequest(["default"]));
      return s;
    }),
  );
  // Kill as soon as the first few certificates are out, while the rest are being issued.
  const t0 = Date.now();
  while (received < 3 && Date.now() - t0 < 10_000) await new Promise((r) => setImmediate(r));
  const killed = await first.stop("SIGKILL");
  assert.is(killed.signal, "SIGKILL");
  console.log(`  killed with ${received}/60 certificates out`);
  for (const s of streams) s.close();
  client.close();
  assert.ok(received < 60, `the kill landed mid-issuance (${received}/60 done)`);

  const second = await startServeProcess(isolatedServeArgs(dir));
  try {
    assert.is(second.rootFingerprint, fingerprint, "same root after the restart");
    assert.is(fingerprintOf(join(state, ROOT_CERT_FILE)), onDisk);
    assert.ok(keyMatchesCert(join(state, ROOT_KEY_FILE), join(state, ROOT_CERT_FILE)), "root key matches root certificate");
    assert.equal(leftovers(state), [], "no temp or half-written file in the state dir");
    await issueAndVerify(second.sds!.replace(/^unix:/, ""), await issuer.mint({ namespace: "load", serviceAccount: "after" }), join(state, ROOT_CERT_FILE), dir);
  } finally {
    await second.stop();
  }
});

/**
 * Starts `meshkey serve` on a fresh state dir and SIGKILLs it at the n-th change the
 * state dir sees (inotify), i.e. somewhere inside root / issuer-key creation.
 */
async function killAtStateEvent(dir: string, n: number): Promise<{ events: number; files: string[] }> {
  const state = join(dir, "state");
  mkdirSync(state, { recursive: true, mode: 0o700 });
  let events = 0;
  const c = spawnRaw(serveArgv(dir));
  const watcher = watch(state, () => {
    events++;
    if (events === n) c.child.kill("SIGKILL");
  });
  const ready = setInterval(() => {
    if (/^  admin\s/m.test(c.out())) c.child.kill("SIGKILL"); // ran to the end before the n-th event
  }, 5);
  try {
    await exitWithin(c, 20_000);
  } finally {
    clearInterval(ready);
    watcher.close();
  }
  return { events, files: readdirSync(state) };
}

test("SIGKILL at each step of the very first start: every restart ends with one consistent root, never a replaced one", async () => {
  // One round: kill the first start at the n-th state-dir change, kill the recovery start too, then start normally.
  const round = async (n: number): Promise<string> => {
    const dir = tempDir("meshkey-firststart-", dirs);
    const state = join(dir, "state");
    const killed = await killAtStateEvent(dir, n);
    const keyBefore = existsSync(join(state, ROOT_KEY_FILE)) ? readFileSync(join(state, ROOT_KEY_FILE), "utf8") : undefined;
    const certBefore = existsSync(join(state, ROOT_CERT_FILE)) ? fingerprintOf(join(state, ROOT_CERT_FILE)) : undefined;
    // A second kill, during the recovery start, then a normal start.
    await killAtStateEvent(dir, 1);
    const c = spawnRaw(serveArgv(dir));
    const deadline = Date.now() + 20_000;
    while (!/^  admin\s/m.test(c.out()) && c.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (!/^  admin\s/m.test(c.out())) {
      // Not ready: it must have said why and exited non-zero, without touching the root.
      const r = await exitWithin(c, 5_000);
      assert.ok(r.code !== 0 && r.code !== null, `exit code ${r.code}`);
      assert.match(c.err(), /root|state dir/, c.err());
      return `kill@${n}: clear error`;
    }
    c.child.kill("SIGTERM");
    await exitWithin(c, 15_000);
    const key = readFileSync(join(state, ROOT_KEY_FILE), "utf8");
    const cert = fingerprintOf(join(state, ROOT_CERT_FILE));
    if (keyBefore !== undefined) assert.is(key, keyBefore, `kill@${n}: a root key on disk is never replaced`);
    if (certBefore !== undefined) assert.is(cert, certBefore, `kill@${n}: a root certificate on disk is never replaced`);
    assert.ok(keyMatchesCert(join(state, ROOT_KEY_FILE), join(state, ROOT_CERT_FILE)), `kill@${n}: key matches certificate`);
    assert.equal(leftovers(state), [], `kill@${n}: no temp or half-written file left (saw ${killed.files.join(", ")} after the kill)`);
    return `kill@${n}(${killed.files.filter((f) => f.startsWith("root")).join("+") || "nothing"}): ok`;
  };
  const outcomes: string[] = [];
  const kills = [2, 4, 7, 9, 11];
  for (let i = 0; i < kills.length; i += 2) outcomes.push(...(await Promise.all(kills.slice(i, i + 2).map(round)))); // two at a time
  console.log(`  ${outcomes.join("; ")}`);
});

// --- a full or read-only state dir, in a private mount namespace -----------------

const noMounts = mountNamespaceUnavailable();
const storage: Array<[string, string, RegExp]> = [
  // A tiny tmpfs already full: the first write of the root key fails.
  ["a full disk", 'mount -t tmpfs -o size=8k,mode=0700 tmpfs "$d" && dd if=/dev/zero of="$d/fill" bs=1k count=64 2>/dev/null; exec "$@"', /no space left on device/i],
  ["a read-only file system", 'mount -t tmpfs -o ro,mode=0700 tmpfs "$d" && exec "$@"', /read-only file system/i],
];
for (const [what, setup, reason] of storage) {
  test(`a state dir on ${what} at start: exit 1 with an error naming the dir`, async () => {
    if (noMounts) {
      console.log(`  SKIPPED (${what}): ${noMounts}`);
      return;
    }
    const dir = tempDir("meshkey-disk-", dirs);
    const state = join(dir, "state");
    mkdirSync(state);
    const c = spawnRaw(["-m", "sh", "-c", `d="$1"; shift; ${setup}`, "sh", state, process.execPath, ...serveArgv(dir)], "unshare");
    const r = await exitWithin(c, 20_000);
    assert.is(r.code, 1, `exit code (stderr: ${c.err()})`);
    assert.ok(c.err().includes(state), `the error names ${state}: ${c.err()}`);
    assert.match(c.err(), reason);
    assert.not.match(c.out(), /is ready/);
    assert.equal(readdirSync(state), [], "nothing leaked out of the mount namespace");
  });
}

test("a full disk that already holds the root: the agent starts with that same root (nothing to write)", async () => {
  if (noMounts) {
    console.log(`  SKIPPED: ${noMounts}`);
    return;
  }
  const dir = tempDir("meshkey-disk-", dirs);
  const seed = join(dir, "seed");
  await openDevTokenIssuer(seed);
  const ca = await openCertificateAuthority({ stateDir: seed, trustDomain: "cluster.local" });
  writeFileSync(join(dir, "root.pem"), ca.rootCertPem);
  const state = join(dir, "state");
  mkdirSync(state);
  const setup = 'mount -t tmpfs -o size=16k,mode=0700 tmpfs "$d" && cp -p "$s"/* "$d"/ && dd if=/dev/zero of="$d/fill" bs=1k count=64 2>/dev/null; exec "$@"';
  const c = spawnRaw(["-m", "sh", "-c", `d="$1"; s="$2"; shift 2; ${setup}`, "sh", state, seed, process.execPath, ...serveArgv(dir)], "unshare");
  const deadline = Date.now() + 20_000;
  while (!/^  admin\s/m.test(c.out()) && c.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const ready = /^  admin\s/m.test(c.out());
  c.child.kill("SIGTERM");
  await exitWithin(c, 15_000);
  assert.ok(ready, `not ready on a full disk: ${c.err()}`);
  const printed = /^  root\s+(\S+)/m.exec(c.out())?.[1]?.replace(/:/g, "").toLowerCase();
  assert.is(printed, fingerprintOf(join(dir, "root.pem")).replace(/:/g, ""), "the root that was on the disk");
});

// --- clock skew between the token issuer and the CA -----------------------------

const SKEW_ISSUER = "https://skewed-clock.meshkey.test";
async function skewSigner(): Promise<{ signer: TokenSigner; sign: (t: { iat: number; nbf?: number; exp: number }) => Promise<string> }> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "skew", alg: "ES256", use: "sig" };
  const authenticator = createJwtAuthenticator({ jwks: { keys: { keys: [jwk] } }, issuer: SKEW_ISSUER, leewaySeconds: 60 });
  const unused = (): never => {
    throw new Error("not used here");
  };
  const sign = ({ iat, nbf, exp }: { iat: number; nbf?: number; exp: number }) => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ "kubernetes.io": { namespace: "skew", serviceaccount: { name: "clock", uid: "u" } } })
      .setProtectedHeader({ alg: "ES256", kid: "skew", typ: "JWT" })
      .setIssuer(SKEW_ISSUER)
      .setSubject("system:serviceaccount:skew:clock")
      .setAudience("istio-ca")
      .setIssuedAt(now + iat)
      .setExpirationTime(now + exp);
    if (nbf !== undefined) jwt.setNotBefore(now + nbf);
    return jwt.sign(privateKey);
  };
  return { signer: { authenticator, mint: unused, mintWithOtherKey: unused, unsigned: unused }, sign };
}

const skews: Array<[string, { iat: number; nbf?: number; exp: number }, boolean]> = [
  ["iat and nbf 30 s in the future (issuer clock ahead)", { iat: 30, nbf: 30, exp: 3600 }, true],
  ["iat and nbf 50 s in the future", { iat: 50, nbf: 50, exp: 3600 }, true],
  ["exp 30 s ago (issuer clock behind)", { iat: -3600, nbf: -3600, exp: -30 }, true],
  ["iat and nbf 5 minutes in the future", { iat: 300, nbf: 300, exp: 3600 }, false],
  ["exp 5 minutes ago", { iat: -3600, nbf: -3600, exp: -300 }, false],
];
test("clock skew within the 60 s leeway is accepted, 5 minutes is refused (SDS over the socket, builtin CA)", async () => {
  const { signer, sign } = await skewSigner();
  const env = await startAgent({ signer });
  try {
    for (const [what, claims, accepted] of skews) {
      const s = env.client.stream({ kind: "header", token: await sign(claims) });
      s.send(sotwRequest(["default"]));
      if (accepted) {
        const r = await s.next(5_000).catch((e: Error) => {
          throw new Error(`${what}: ${e.message}`);
        });
        assert.equal(secretsOf(r).map((x) => x.name), ["default"], what);
        s.close();
      } else {
        const st = await s.status;
        assert.is(st.code, grpc.status.UNAUTHENTICATED, `${what}: ${st.details}`);
      }
    }
  } finally {
    await env.close();
  }
});

test("a peer whose clock runs 2 minutes behind accepts a certificate issued just now (notBefore is backdated); 10 minutes behind does not", async () => {
  const env = await startAgent();
  try {
    const token = await env.signer.mint("skew", "peer");
    const res = await env.client.fetch({ kind: "header", token }, ["default"]);
    const leaf = join(env.dir, "leaf.pem");
    writeFileSync(leaf, pemBlocks(tlsOf(secretsOf(res)[0]!).chainPem)[0]!);
    const now = Math.floor(Date.now() / 1000);
    const at = (secondsBehind: number) => openssl(["verify", "-attime", String(now - secondsBehind), "-CAfile", env.rootPemFile, leaf]);
    const behind2m = at(120);
    assert.is(behind2m.status, 0, `2 min behind: ${behind2m.stdout}${behind2m.stderr}`);
    const behind10m = at(600);
    assert.is.not(behind10m.status, 0);
    assert.match(behind10m.stdout + behind10m.stderr, /not yet valid/);
  } finally {
    await env.close();
  }
});

test.run();
