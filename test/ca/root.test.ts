// The root in the state dir: created once (mode 0600), reloaded on restart, never re-minted.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as crypto from "node:crypto";
import { existsSync, statSync, unlinkSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT_CERT_FILE, ROOT_KEY_FILE, openCertificateAuthority, readCertificateInfo } from "../../src/ca/index.js";
import { openssl, tempDir } from "./helpers.js";

const dirs: Array<{ remove(): void }> = [];
function fresh(): string {
  const d = tempDir();
  dirs.push(d);
  return join(d.path, "state");
}
test.after(() => dirs.forEach((d) => d.remove()));

test("a restart reloads the same root (same fingerprint) instead of minting a new one", async () => {
  const stateDir = fresh();
  const first = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
  const second = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local", keyType: "rsa-2048" });
  assert.is(readCertificateInfo(second.rootCertPem).fingerprintSha256, readCertificateInfo(first.rootCertPem).fingerprintSha256);
  assert.is(readFileSync(join(stateDir, ROOT_CERT_FILE), "utf8"), first.rootCertPem);
});

test("root key and certificate files are mode 0600 in a 0700 state dir", async () => {
  const stateDir = fresh();
  await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
  assert.is(statSync(join(stateDir, ROOT_KEY_FILE)).mode & 0o777, 0o600);
  assert.is(statSync(join(stateDir, ROOT_CERT_FILE)).mode & 0o777, 0o600);
  assert.is(statSync(stateDir).mode & 0o777, 0o700);
});

for (const [keyType, keyText] of [["ec-p256", /ASN1 OID: prime256v1/], ["rsa-2048", /Public-Key: \(2048 bit\)/]] as const) {
  test(`a new ${keyType} root is a 10-year CA with O = trust domain that openssl accepts as a trust anchor`, async () => {
    const stateDir = fresh();
    const ca = await openCertificateAuthority({ stateDir, trustDomain: "example.org", keyType });
    const text = openssl(["x509", "-noout", "-text"], ca.rootCertPem).out;
    assert.match(text, keyText);
    assert.match(text, /Subject: O = example\.org\n/);
    assert.match(text, /Basic Constraints: critical\s+CA:TRUE/);
    assert.match(text, /Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    const info = readCertificateInfo(ca.rootCertPem);
    const years = (info.notAfter.getTime() - info.notBefore.getTime()) / (365 * 86400_000);
    assert.ok(years > 9.99 && years < 10.01, `validity ${years} years`);
    const root = join(stateDir, ROOT_CERT_FILE);
    const r = openssl(["verify", "-x509_strict", "-CAfile", root, root]);
    assert.is(r.status, 0, r.out);
    const key = crypto.createPrivateKey(readFileSync(join(stateDir, ROOT_KEY_FILE)));
    assert.ok(new crypto.X509Certificate(ca.rootCertPem).checkPrivateKey(key));
  });
}

test("two CAs opening the same empty state dir at once end up with one root", async () => {
  const stateDir = fresh();
  const cas = await Promise.all(Array.from({ length: 4 }, () => openCertificateAuthority({ stateDir, trustDomain: "cluster.local" })));
  const prints = new Set(cas.map((c) => readCertificateInfo(c.rootCertPem).fingerprintSha256));
  assert.is(prints.size, 1);
});

test("a root certificate without its key is an error naming the missing file; nothing is minted", async () => {
  const stateDir = fresh();
  const ca = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
  unlinkSync(join(stateDir, ROOT_KEY_FILE));
  try {
    await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, new RegExp(`${ROOT_KEY_FILE} is missing`));
  }
  assert.not.ok(existsSync(join(stateDir, ROOT_KEY_FILE)));
  assert.is(readFileSync(join(stateDir, ROOT_CERT_FILE), "utf8"), ca.rootCertPem);
});

test("a root key left without its certificate (crash in between) gets its certificate from that key", async () => {
  const stateDir = fresh();
  await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
  const keyPem = readFileSync(join(stateDir, ROOT_KEY_FILE), "utf8");
  unlinkSync(join(stateDir, ROOT_CERT_FILE));
  const ca = await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
  assert.is(readFileSync(join(stateDir, ROOT_KEY_FILE), "utf8"), keyPem);
  assert.ok(new crypto.X509Certificate(ca.rootCertPem).checkPrivateKey(crypto.createPrivateKey(keyPem)));
});

test("a root key that does not match the root certificate is refused", async () => {
  const stateDir = fresh();
  await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" });
  const other = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ format: "pem", type: "pkcs8" });
  writeFileSync(join(stateDir, ROOT_KEY_FILE), other);
  await openCertificateAuthority({ stateDir, trustDomain: "cluster.local" }).then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /does not match the public key of .*root-cert\.pem/),
  );
});

test("an invalid trust domain is refused before anything is written", async () => {
  const stateDir = fresh();
  await openCertificateAuthority({ stateDir, trustDomain: "Bad/Domain" }).then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /invalid trust domain "Bad\/Domain"/),
  );
  assert.not.ok(existsSync(stateDir));
});

test.run();
