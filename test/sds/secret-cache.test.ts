// The secret cache alone (no gRPC): name resolution, issuance checks, rotation
// schedule, the trust bundle's origin, idle identities.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openCertificateAuthority, type AuthenticatedCaller, type CertificateAuthority } from "../../src/ca/index.js";
import { CaProviderError, createSecretCache, type CaProvider, type SecretItem, type WatchCallbacks } from "../../src/sds/index.js";
import { Registry } from "prom-client";
import { createFakeClock } from "../support/fake-clock.js";

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

test("2,000 identities whose streams ended are evicted after the idle timeout; an identity with an open stream is kept", async () => {
  // Issuance is cheap here: the key factory and the CA are fakes, and the "certificate" is a
  // line the fake certificate reader understands. Time is a fake clock: nothing sleeps.
  const clock = createFakeClock();
  const idleTimeoutMs = 120_000;
  let signed = 0;
  const fakeCa: CaProvider = {
    async sign(csrPem, token) {
      signed++;
      return [`FAKE ${token} ${csrPem}`];
    },
  };
  const registry = new Registry();
  const cache = createSecretCache({
    caProvider: fakeCa,
    trustDomain: "cluster.local",
    rootCertPem: () => "FAKE ROOT",
    now: clock.now,
    timers: clock,
    idleTimeoutMs,
    registry,
    createKeyAndCsr: async () => ({ privateKeyPem: "key", csrPem: `csr-${signed}` }),
    readCertificateInfo: (pem) => {
      const [, ns, sa, csr] = /^FAKE (\S+)\/(\S+) (\S+)/.exec(pem)!;
      return {
        serialHex: csr!,
        notBefore: new Date(clock.now()),
        notAfter: new Date(clock.now() + 24 * 3600_000),
        uriSans: [`spiffe://cluster.local/ns/${ns}/sa/${sa}`],
        fingerprintSha256: "00",
      };
    },
  });
  const identities = async () => (await registry.getSingleMetric("meshkey_sds_identities")!.get()).values[0]!.value;
  const callerOf = (ns: string, sa: string): AuthenticatedCaller => ({ namespace: ns, serviceAccount: sa, subject: `system:serviceaccount:${ns}:${sa}`, expiresAt: undefined });

  const n = 2_000;
  let issued = 0;
  let allIssued!: () => void;
  const done = new Promise<void>((r) => (allIssued = r));
  const count: WatchCallbacks = {
    onUpdate: () => {
      if (++issued === n + 1) allIssued();
    },
    onRevoked: (r) => assert.unreachable(r),
    onFailed: (e) => assert.unreachable(e.message),
  };
  const kept = cache.watch(callerOf("kept", "open-stream"), "kept/open-stream", "default", count)!;
  const watches = Array.from({ length: n }, (_, i) => cache.watch(callerOf(`ns-${i}`, `sa-${i}`), `ns-${i}/sa-${i}`, "default", count)!);
  await done;
  // The last issuance hands out its certificate before it settles: let it settle (an identity
  // still issuing when its idle timer fires is rightly given another timeout).
  while (cache.debug().identities.some((i) => i.issuing)) await new Promise((r) => setImmediate(r));
  assert.is(signed, n + 1, "one certificate per identity");
  assert.ok(watches.every((w) => w.current()?.version), "every identity has its certificate");
  assert.is(cache.debug().identities.length, n + 1);

  // Their streams end; the identities stay cached (a reconnect within the timeout reuses them)…
  for (const w of watches) w.cancel();
  clock.advance(idleTimeoutMs - 1);
  assert.is(cache.debug().identities.length, n + 1);

  // …and are dropped together once the timeout has passed, with their timers.
  clock.advance(1);
  const left = cache.debug().identities;
  assert.equal(left.map((i) => i.spiffeId), ["spiffe://cluster.local/ns/kept/sa/open-stream"]);
  assert.is(await identities(), 1, "meshkey_sds_identities");
  assert.is(clock.pending(), 1, "only the kept identity's rotation timer is left: no timer or entry held per evicted identity");
  assert.ok(kept.current()?.version, "the open stream still has its certificate");

  // Evicted means gone: the same workload coming back gets a new key and certificate.
  const back = cache.watch(callerOf("ns-7", "sa-7"), "ns-7/sa-7", "default", { ...count, onUpdate: () => {} })!;
  await cache.rotate(back.spiffeId);
  assert.is(signed, n + 2);
  back.cancel();
  kept.cancel();
  cache.close();
  assert.is(clock.pending(), 0);
});

test.run();
