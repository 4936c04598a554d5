// The secret cache alone (no gRPC): name resolution, issuance checks, rotation
// schedule, the trust bundle's origin, idle identities.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openCertificateAuthority, type AuthenticatedCaller, type CertificateAuthority } from "../../src/ca/index.js";
import { CaProviderError, createSecretCache, type CaProvider, type SecretItem, type WatchCallbacks } from "../../src/sds/index.js";

let dir: string;
let ca: CertificateAuthority;
const caller: AuthenticatedCaller = { namespace: "foo", serviceAccount: "httpbin", subject: "system:serviceaccount:foo:httpbin", expiresAt: undefined };

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshkey-cache-"));
  ca = await openCertificateAuthority({ stateDir: join(dir, "ca"), trustDomain: "cluster.local" });
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** Signs for a fixed identity (the token is not looked at). */
function providerFor(identity = { namespace: "foo", serviceAccount: "httpbin" }): CaProvider & { calls: number } {
  const p = {
    calls: 0,
    async sign(csr: string, _token: string, ttl?: number) {
      p.calls++;
      return ca.sign(csr, identity, ttl);
    },
  };
  return p;
}

function recorder() {
  const updates: SecretItem[] = [];
  const failures: CaProviderError[] = [];
  const revoked: string[] = [];
  let wake: (() => void) | undefined;
  const callbacks: WatchCallbacks = {
    onUpdate: (i) => {
      updates.push(i);
      wake?.();
    },
    onFailed: (e) => {
      failures.push(e);
      wake?.();
    },
    onRevoked: (r) => {
      revoked.push(r);
      wake?.();
    },
  };
  return {
    callbacks,
    updates,
    failures,
    revoked,
    waitEvent: () => new Promise<void>((r) => (wake = r)),
  };
}

const names: Array<[string, string | undefined]> = [
  ["default", "tlsCertificate"],
  ["spiffe://cluster.local/ns/foo/sa/httpbin", "tlsCertificate"],
  ["ROOTCA", "validationContext"],
  ["spiffe://cluster.local", "validationContext"],
  ["spiffe://cluster.local/ns/bar/sa/httpbin", undefined],
  ["spiffe://other.domain", undefined],
  ["Default", undefined],
  ["", undefined],
];
for (const [name, kind] of names) {
  test(`name ${JSON.stringify(name)} means ${kind ?? "nothing (unknown)"}`, () => {
    const cache = createSecretCache({ caProvider: providerFor(), trustDomain: "cluster.local" });
    assert.is(cache.resolve(caller, name), kind);
    cache.close();
  });
}

test("graceRatio outside (0, 1) is refused", () => {
  for (const g of [0, 1, 1.5, -0.1]) {
    assert.throws(() => createSecretCache({ caProvider: providerFor(), trustDomain: "cluster.local", graceRatio: g }), /graceRatio/);
  }
});

test("renewal is scheduled at notAfter − graceRatio × lifetime, within ±1 %", async () => {
  const cache = createSecretCache({ caProvider: providerFor(), trustDomain: "cluster.local", graceRatio: 0.3, certTtlSeconds: 3600 });
  const item = await cache.fetch(caller, "t", "default");
  assert.ok(item);
  const [ident] = cache.debug().identities;
  const notAfter = Date.parse(ident!.notAfter!);
  const rotateAt = Date.parse(ident!.rotateAt!);
  const lifetime = 3600_000;
  const ratio = (notAfter - rotateAt) / lifetime;
  assert.ok(ratio > 0.29 - 0.002 && ratio < 0.31 + 0.002, `ratio ${ratio}`);
  cache.close();
});

test("without rootCertPem, the trust bundle is the last certificate of the issued chain", async () => {
  const cache = createSecretCache({ caProvider: providerFor(), trustDomain: "cluster.local" });
  const root = await cache.fetch(caller, "t", "ROOTCA");
  assert.is(root?.trustedCaPem?.trim(), ca.rootCertPem.trim());
  cache.close();
});

test("a certificate for another identity is refused and never served", async () => {
  const cache = createSecretCache({ caProvider: providerFor({ namespace: "bar", serviceAccount: "sleep" }), trustDomain: "cluster.local" });
  const rec = recorder();
  const w = cache.watch(caller, "t", "default", rec.callbacks)!;
  await rec.waitEvent();
  assert.is(rec.updates.length, 0);
  assert.is(rec.failures[0]?.kind, "invalid");
  assert.match(rec.failures[0]!.message, /expected spiffe:\/\/cluster.local\/ns\/foo\/sa\/httpbin/);
  assert.is(w.current(), undefined);
  w.cancel();
  cache.close();
});

test("watches of one identity share one key and certificate; a renewal updates every watcher", async () => {
  const provider = providerFor();
  const cache = createSecretCache({ caProvider: provider, trustDomain: "cluster.local" });
  const a = recorder();
  const b = recorder();
  const wa = cache.watch(caller, "t", "default", a.callbacks)!;
  const wb = cache.watch(caller, "t", "spiffe://cluster.local/ns/foo/sa/httpbin", b.callbacks)!;
  await Promise.all([a.waitEvent(), b.waitEvent()]);
  assert.is(provider.calls, 1);
  assert.is(a.updates[0]!.privateKeyPem, b.updates[0]!.privateKeyPem);
  assert.is(a.updates[0]!.version, b.updates[0]!.version);
  await cache.rotate("spiffe://cluster.local/ns/foo/sa/httpbin");
  assert.is(a.updates.length, 2);
  assert.is(b.updates.length, 2);
  assert.is.not(a.updates[1]!.privateKeyPem, a.updates[0]!.privateKeyPem, "a new key, not only a new certificate");
  wa.cancel();
  wb.cancel();
  cache.close();
});

test("an RSA-2048 key when asked", async () => {
  const cache = createSecretCache({ caProvider: providerFor(), trustDomain: "cluster.local", keyType: "rsa-2048" });
  const item = await cache.fetch(caller, "t", "default");
  const { createPrivateKey } = await import("node:crypto");
  const key = createPrivateKey(item!.privateKeyPem!);
  assert.is(key.asymmetricKeyType, "rsa");
  assert.is(key.asymmetricKeyDetails?.modulusLength, 2048);
  cache.close();
});

test.run();
