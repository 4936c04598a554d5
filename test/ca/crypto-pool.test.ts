// The crypto worker pool: keys and CSRs made on worker threads verify with openssl, leaves
// the CA signs through it verify against the root, a full queue refuses at once, a worker
// that dies takes only its own jobs along and is replaced, close() refuses what is left,
// and no private key is ever written to a file.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { X509Certificate } from "node:crypto";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  CryptoPoolBusyError,
  CryptoPoolClosedError,
  CryptoWorkerExitedError,
  InvalidRequestError,
  createCryptoPool,
  createKeyAndCsr,
  openCertificateAuthority,
  type CryptoPool,
  type KeyType,
} from "../../src/ca/index.js";
import { CaProviderError, createBuiltinCaProvider } from "../../src/sds/index.js";
import { resolveServeConfig } from "../../src/cli/serve-config.js";
import { openssl, tempDir, verifyChain } from "./helpers.js";
import { recentFiles } from "../support/recent-files.js";

const dir = tempDir("meshkey-pool-");
const pools: CryptoPool[] = [];
function pool(options: Parameters<typeof createCryptoPool>[0]): CryptoPool {
  const p = createCryptoPool(options);
  pools.push(p);
  return p;
}
test.after(async () => {
  for (const p of pools) await p.close();
  dir.remove();
});

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.unreachable("resolved");
  throw new Error("unreachable");
}

const foo = { namespace: "foo", serviceAccount: "httpbin" };

for (const keyType of ["ec-p256", "rsa-2048"] as const satisfies readonly KeyType[]) {
  test(`${keyType}: a key and CSR from a worker pass openssl req -verify, and the CSR holds that key's public half`, async () => {
    const p = pool({ workers: 1 });
    const { privateKeyPem, csrPem } = await p.createKeyAndCsr(keyType);
    const verified = openssl(["req", "-verify", "-noout"], csrPem);
    assert.is(verified.status, 0, verified.out);
    assert.match(verified.out, /verify OK/i);
    const fromCsr = openssl(["req", "-pubkey", "-noout"], csrPem);
    const fromKey = openssl(["pkey", "-pubout"], privateKeyPem);
    assert.is(fromKey.status, 0, fromKey.out);
    assert.is(fromCsr.out.trim(), fromKey.out.trim());
  });
}

test("createKeyAndCsr is a plain function: passed on unbound (as to createSecretCache), it still works", async () => {
  const p = pool({ workers: 1 });
  const make = p.createKeyAndCsr;
  const { csrPem } = await make("ec-p256");
  assert.is(openssl(["req", "-verify", "-noout"], csrPem).status, 0);
});

test("leaves signed through the pool verify with openssl against the root, with the workload's SPIFFE ID", async () => {
  const p = pool({ workers: 2 });
  const ca = await openCertificateAuthority({ stateDir: join(dir.path, "ca"), trustDomain: "cluster.local", cryptoPool: p });
  const csrs = await Promise.all([createKeyAndCsr("ec-p256"), p.createKeyAndCsr("ec-p256"), p.createKeyAndCsr("rsa-2048")]);
  const chains = await Promise.all(csrs.map(({ csrPem }) => ca.sign(csrPem, foo)));
  for (const chain of chains) {
    assert.is(chain.length, 2);
    assert.is(chain[1], ca.rootCertPem);
    for (const purpose of ["sslclient", "sslserver"] as const) {
      const v = verifyChain(dir.path, chain, purpose);
      assert.is(v.status, 0, v.out);
    }
    assert.is(new X509Certificate(chain[0]!).subjectAltName, "URI:spiffe://cluster.local/ns/foo/sa/httpbin");
  }
});

test("a pooled CA and an inline CA of the same root issue alike (same validity, same extensions, same issuer)", async () => {
  const p = pool({ workers: 1 });
  const stateDir = join(dir.path, "alike");
  const inline = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
  const pooled = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local", cryptoPool: p });
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const [a, b] = [new X509Certificate((await inline.sign(csrPem, foo, 3600))[0]!), new X509Certificate((await pooled.sign(csrPem, foo, 3600))[0]!)];
  assert.is(b.issuer, a.issuer);
  assert.is(b.subjectAltName, a.subjectAltName);
  assert.is(b.keyUsage?.join(), a.keyUsage?.join());
  assert.ok(Math.abs(Date.parse(b.validTo) - Date.parse(a.validTo)) <= 2_000);
  assert.ok(b.publicKey.equals(a.publicKey));
  assert.ok(b.verify(new X509Certificate(pooled.rootCertPem).publicKey));
});

const badCsrs: Array<[what: string, make: () => Promise<string>, message: RegExp]> = [
  [
    "a CSR whose signature was altered",
    async () => {
      const { csrPem } = await createKeyAndCsr("ec-p256");
      const body = csrPem.split("\n").slice(1, -2).join("");
      const der = Buffer.from(body, "base64");
      der[der.length - 3]! ^= 0x01;
      return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    },
    /^bad CSR: CSR signature does not verify/,
  ],
  ["no CSR at all", async () => "hello", /^bad CSR: no "CERTIFICATE REQUEST" PEM block/],
];

for (const [what, make, message] of badCsrs) {
  test(`through the pool, ${what} is refused with InvalidRequestError, as inline`, async () => {
    const p = pool({ workers: 1 });
    const stateDir = join(dir.path, "bad");
    const pooled = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local", cryptoPool: p });
    const inline = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
    const csr = await make();
    const [e1, e2] = [await rejection(pooled.sign(csr, foo)), await rejection(inline.sign(csr, foo))];
    assert.instance(e1, InvalidRequestError);
    assert.match(e1.message, message);
    assert.is(e1.message, e2.message);
  });
}

test("a full queue refuses at once with CryptoPoolBusyError; the queued jobs still complete and the pool takes jobs again", async () => {
  // The worker is still starting: every job waits in the queue, two at most.
  const p = pool({ workers: 1, maxQueuedJobs: 2 });
  const a = p.createKeyAndCsr("ec-p256");
  const b = p.createKeyAndCsr("ec-p256");
  const refused = await rejection(p.createKeyAndCsr("ec-p256"));
  assert.instance(refused, CryptoPoolBusyError);
  assert.match(refused.message, /2 crypto jobs are already waiting for a worker \(the limit\); retry later/);
  await Promise.all([a, b]);
  await p.createKeyAndCsr("ec-p256");
});

test("a busy pool makes the builtin CA provider's failure 'unavailable' (the secret cache retries with backoff)", async () => {
  const p = pool({ workers: 1, maxQueuedJobs: 0 });
  const ca = await openCertificateAuthority({ stateDir: join(dir.path, "busy"), trustDomain: "cluster.local", cryptoPool: p });
  const authenticator = { authenticate: async () => ({ ...foo, subject: "system:serviceaccount:foo:httpbin", expiresAt: undefined }) };
  const provider = createBuiltinCaProvider({ ca, authenticator });
  const { csrPem } = await createKeyAndCsr("ec-p256");
  while (p.load().readyWorkers === 0) await new Promise((r) => setTimeout(r, 10));
  assert.is((await provider.sign(csrPem, "t")).length, 2, "with a free worker, nothing needs to wait");
  // Both of the worker's slots taken by RSA keys, and nothing may wait: refused.
  const slow = [p.createKeyAndCsr("rsa-2048"), p.createKeyAndCsr("rsa-2048")];
  const err = await rejection(provider.sign(csrPem, "t"));
  await Promise.all(slow);
  assert.instance(err, CaProviderError);
  assert.is((err as CaProviderError).kind, "unavailable");
  assert.instance((err as Error).cause, CryptoPoolBusyError);
});

test("a worker terminated mid-job rejects its own jobs with CryptoWorkerExitedError; a new worker takes the queued ones and the pool keeps serving", async () => {
  const p = pool({ workers: 1 });
  await p.createKeyAndCsr("ec-p256"); // started and ready
  const [first] = p.workerThreads();
  const firstThread = first!.threadId;
  // RSA keys take tens of ms: two are on the worker when it is terminated, the others wait.
  const jobs = Array.from({ length: 4 }, () => p.createKeyAndCsr("rsa-2048").then(() => "done", (e: Error) => e));
  assert.equal(p.load(), { queued: 2, inFlight: 2, readyWorkers: 1 });
  await first!.terminate();
  const results = await Promise.all(jobs);
  const exited = results.filter((r): r is Error => r instanceof Error);
  assert.is(exited.length, 2, String(results));
  for (const e of exited) {
    assert.instance(e, CryptoWorkerExitedError);
    assert.match(e.message, new RegExp(`the crypto worker \\(thread ${firstThread}\\) stopped \\(exit code 1\\) before it answered`));
  }
  assert.equal(results.slice(2), ["done", "done"], "the queued jobs ran on the new worker");
  const [second] = p.workerThreads();
  assert.ok(second && second.threadId !== firstThread, "replaced");
  assert.is(p.workerThreads().length, 1);
  const more = await Promise.all(Array.from({ length: 20 }, () => p.createKeyAndCsr("ec-p256")));
  assert.is(more.length, 20);
});

test("close() rejects queued and in-flight jobs with CryptoPoolClosedError, stops the workers, and refuses new jobs", async () => {
  const p = pool({ workers: 1 });
  await p.createKeyAndCsr("ec-p256");
  const jobs = Array.from({ length: 5 }, () => rejection(p.createKeyAndCsr("rsa-2048")));
  await p.close();
  for (const e of await Promise.all(jobs)) {
    assert.instance(e, CryptoPoolClosedError);
    assert.match(e.message, /the crypto pool is closed; the job was not done/);
  }
  assert.is(p.workerThreads().length, 0);
  assert.instance(await rejection(p.createKeyAndCsr("ec-p256")), CryptoPoolClosedError);
  await p.close(); // twice is fine
});

test("an unknown key type fails that job only", async () => {
  const p = pool({ workers: 1 });
  const err = await rejection(p.createKeyAndCsr("dsa-1024" as KeyType));
  assert.match(err.message, /unknown key type "dsa-1024"/);
  await p.createKeyAndCsr("ec-p256");
  assert.equal(p.load(), { queued: 0, inFlight: 0, readyWorkers: 1 });
});

test("an idle pool that is never closed does not keep the process alive", async () => {
  const script = join(dir.path, "idle-pool.mts");
  writeFileSync(
    script,
    `import { createCryptoPool } from ${JSON.stringify(pathToFileURL(fileURLToPath(new URL("../../src/ca/index.ts", import.meta.url))).href)};\n` +
      `const p = createCryptoPool({ workers: 2 });\n` +
      `const { csrPem } = await p.createKeyAndCsr("ec-p256");\n` +
      `console.log(csrPem.startsWith("-----BEGIN CERTIFICATE REQUEST-----") ? "made" : "wrong");\n`,
  );
  const started = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", script], { encoding: "utf8", timeout: 20_000 });
  assert.is(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.is(r.stdout.trim(), "made", "the job finished before the process left");
  assert.ok(Date.now() - started < 20_000);
});

const flagCases: Array<[args: string[], expected: number | undefined | RegExp]> = [
  [[], undefined],
  [["--crypto-workers", "0"], 0],
  [["--crypto-workers", "3"], 3],
  [["--crypto-workers=-1"], /--crypto-workers: must be a whole number \(0 or more\), got "-1"/],
  [["--crypto-workers", "two"], /--crypto-workers: must be a whole number \(0 or more\), got "two"/],
];
for (const [args, expected] of flagCases) {
  test(`serve ${args.join(" ") || "(no flag)"}: ${expected instanceof RegExp ? "refused" : `crypto workers ${expected ?? "from the CPUs"}`}`, () => {
    if (expected instanceof RegExp) assert.throws(() => resolveServeConfig(args), expected);
    else assert.is(resolveServeConfig(args).cryptoWorkers, expected);
  });
}

test("a pool needs at least one worker", () => {
  assert.throws(() => createCryptoPool({ workers: 0 }), /at least 1 worker, got 0/);
});

// ------------------------------------------------ no private key on disk


test("no private key the pool made or was handed is written to a file", async () => {
  const started = Date.now() - 1_000;
  const stateDir = join(dir.path, "nokey");
  const p = pool({ workers: 2 });
  const ca = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local", cryptoPool: p });
  const made = await Promise.all([p.createKeyAndCsr("ec-p256"), p.createKeyAndCsr("ec-p256"), p.createKeyAndCsr("rsa-2048")]);
  for (const { csrPem } of made) await ca.sign(csrPem, foo);
  const caKeyPem = readFileSync(join(stateDir, "root-key.pem"), "utf8");
  const bodies = [...made.map((m) => m.privateKeyPem), caKeyPem].map((k) => k.replace(/-----[A-Z ]+-----|\s/g, "").slice(20, 80));
  for (const root of [tmpdir(), process.cwd()]) {
    for (const f of recentFiles(root, started)) {
      if (f === join(stateDir, "root-key.pem")) continue; // the CA's own key, where it lives
      let text: string;
      try {
        text = readFileSync(f, "latin1").replace(/\s/g, "");
      } catch {
        continue;
      }
      for (const b of bodies) assert.not.ok(text.includes(b), `${f} holds a private key`);
    }
  }
});

test.run();
