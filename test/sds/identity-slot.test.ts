// An identity's life in the secret cache, on a manual clock: first issuance, rotation,
// CA failures by kind, backoff, waiting for a fresh token, idle eviction, fetch waiters.
// The CA, the key factory and the certificate reader are fakes, so a case runs in
// milliseconds: time moves only when a case advances the clock, and a case waits on
// conditions (the event loop turning), never on the wall clock.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Registry } from "prom-client";
import type { AuthenticatedCaller } from "../../src/ca/index.js";
import { CaProviderError, createSecretCache, type CaFailureKind, type SecretWatch } from "../../src/sds/index.js";
import { MAX_TIMER_MS } from "../../src/sds/rotation-policy.js";
import { createFakeClock } from "../support/fake-clock.js";
import { metricValue } from "./sds-harness.js";

const ID = "spiffe://cluster.local/ns/foo/sa/httpbin";
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

function callerWith(expiresAt?: number): AuthenticatedCaller {
  return {
    namespace: "foo",
    serviceAccount: "httpbin",
    subject: "system:serviceaccount:foo:httpbin",
    expiresAt: expiresAt === undefined ? undefined : new Date(expiresAt),
  };
}

/**
 * A cache whose CA answers from `script` (then "ok"), whose n-th key signs as serial-n, and
 * whose certificates last `certTtlMs` from the moment they are signed, on the fake clock.
 */
function world(opts: { certTtlMs?: number; idleTimeoutMs?: number; retry?: { initialMs: number; maxMs: number } } = {}) {
  const clock = createFakeClock();
  const certTtlMs = opts.certTtlMs ?? HOUR;
  const script: Array<"ok" | CaProviderError> = [];
  const signedWith: string[] = [];
  let keys = 0;
  const registry = new Registry();
  const cache = createSecretCache({
    caProvider: {
      async sign(csrPem, token) {
        signedWith.push(token);
        const outcome = script.shift() ?? "ok";
        if (outcome !== "ok") throw outcome;
        return [`LEAF ${csrPem}`, "ROOT"];
      },
    },
    trustDomain: "cluster.local",
    now: clock.now,
    timers: clock,
    registry,
    idleTimeoutMs: opts.idleTimeoutMs ?? 2 * MINUTE,
    retry: opts.retry ?? { initialMs: 1_000, maxMs: MINUTE },
    createKeyAndCsr: async () => {
      keys++;
      return { privateKeyPem: `key-${keys}`, csrPem: `csr-${keys}` };
    },
    readCertificateInfo: (pem) => ({
      serialHex: pem.replace("LEAF csr-", "serial-"),
      notBefore: new Date(clock.now()),
      notAfter: new Date(clock.now() + certTtlMs),
      uriSans: [ID],
      fingerprintSha256: "00",
    }),
  });
  const identity = () => cache.debug().identities.find((i) => i.spiffeId === ID);
  const w = {
    clock,
    cache,
    script,
    signedWith,
    registry,
    identity,
    state: () => identity()?.state ?? "gone",
    /** Moves the clock to `ms` past the identity's rotation time (debug() rounds it down to the millisecond). */
    advancePastRotation(ms = 1) {
      clock.advance(Date.parse(identity()!.rotateAt!) + ms - clock.now());
    },
    /** A stream of the workload: records what the cache tells it and, as the SDS server does, ends on revoked or failed. */
    stream(o: { token?: string; expiresAt?: number; name?: string; endsOnRevoke?: boolean } = {}) {
      const events: string[] = [];
      let watch: SecretWatch | undefined = undefined;
      const end = (what: string) => {
        events.push(what);
        if (o.endsOnRevoke ?? true) watch?.cancel();
      };
      watch = cache.watch(callerWith(o.expiresAt), o.token ?? "t1", o.name ?? "default", {
        onUpdate: (item) => events.push(`update ${item.version}`),
        onRevoked: (reason) => end(`revoked: ${reason}`),
        onFailed: (err) => end(`failed: ${err.kind}`),
      });
      return { events, watch: watch! };
    },
    fetch(o: { token?: string; expiresAt?: number; name?: string; signal?: AbortSignal } = {}) {
      return cache.fetch(callerWith(o.expiresAt), o.token ?? "t1", o.name ?? "default", o.signal);
    },
  };
  return w;
}

/** Lets the event loop turn until `cond` holds (issuance takes a few macrotasks: its queue turn, the fake CA). */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1_000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}

/** Lets everything already started run to its end, for cases that check that nothing happened. */
async function quiet(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

const failure = (kind: CaFailureKind) => new CaProviderError(`CA says ${kind}`, kind);

// ---------------------------------------------------------------------------------------------
// A CA failure, by kind, at the first issuance (no certificate) and at renewal (one is served):
// [kind, at, the identity's state afterwards, what the stream is told, whether it is retried]
const failures: Array<[CaFailureKind, "first issuance" | "renewal", string, RegExp | undefined, boolean]> = [
  ["unavailable", "first issuance", "retrying", undefined, true],
  ["invalid", "first issuance", "idle", /^failed: invalid$/, false],
  ["unauthenticated", "first issuance", "idle", /^failed: unauthenticated$/, false],
  ["unavailable", "renewal", "retrying", undefined, true],
  ["invalid", "renewal", "retrying", undefined, true],
  ["unauthenticated", "renewal", "idle", /^revoked: CA rejected the workload token: CA says unauthenticated$/, false],
];
for (const [kind, at, state, told, retried] of failures) {
  const what = told ? `the stream is told (${told.source.replace(/^\^|\$$/g, "")}) and ends` : "the stream waits";
  test(`CA says ${kind} at ${at}: ${what}, state ${state}, ${retried ? "retried with backoff" : "not retried"}`, async () => {
    const w = world();
    const s = w.stream();
    if (at === "renewal") {
      await until("the first certificate", () => s.events.length === 1);
      w.script.push(failure(kind));
      w.advancePastRotation();
    } else {
      w.script.unshift(failure(kind));
    }
    const before = s.events.length;
    const attempts = at === "renewal" ? 2 : 1;
    await until("the failed attempt handled", () => w.signedWith.length === attempts && w.state() !== "issuing");
    assert.is(w.state(), state);
    assert.is(w.identity()!.lastError?.kind, kind);
    const told_ = s.events.slice(before);
    if (told) {
      assert.is(told_.length, 1, told_.join("; "));
      assert.match(told_[0]!, told);
    } else {
      assert.equal(told_, [], "nothing sent while it is retried");
    }
    if (at === "renewal") assert.is(w.identity()!.serialHex, "serial-1", "the served certificate is kept");
    w.clock.advance(MINUTE);
    await quiet();
    assert.is(w.signedWith.length > attempts, retried, `${w.signedWith.length} attempts`);
    assert.is(await metricValue(w.registry, "meshkey_sds_renewal_failures_total", { reason: kind }), at === "renewal" ? 1 : 0);
    w.cache.close();
  });
}

// ---------------------------------------------------------------------------------------------
test("first issuance: a watcher gets the certificate once signed; it is served and renews at about half its lifetime", async () => {
  const w = world();
  const s = w.stream();
  assert.is(s.watch.current(), undefined, "nothing before it is signed");
  assert.is(w.state(), "issuing");
  await until("the first certificate", () => s.events.length === 1);
  assert.equal(s.events, ["update serial-1"]);
  assert.is(s.watch.current()?.version, "serial-1");
  assert.is(s.watch.current()?.privateKeyPem, "key-1");
  const id = w.identity()!;
  assert.is(id.state, "serving");
  assert.is(id.csrCount, 1);
  const ratio = (Date.parse(id.notAfter!) - Date.parse(id.rotateAt!)) / HOUR;
  assert.ok(ratio > 0.49 - 0.001 && ratio < 0.51 + 0.001, `renewed with ${ratio} of the lifetime left`);
  w.cache.close();
});

test("at rotateAt the certificate is renewed with a new key, and the new serial is pushed to every watcher", async () => {
  const w = world();
  const a = w.stream();
  const b = w.stream({ name: ID });
  await until("both first updates", () => a.events.length === 1 && b.events.length === 1);
  assert.is(w.signedWith.length, 1, "one CSR for both streams");
  w.advancePastRotation(-2);
  await quiet();
  assert.is(w.signedWith.length, 1, "not renewed before rotateAt");
  w.clock.advance(3);
  await until("the renewal pushed", () => a.events.length === 2 && b.events.length === 2);
  assert.equal(a.events, ["update serial-1", "update serial-2"]);
  assert.equal(b.events, ["update serial-1", "update serial-2"]);
  assert.is(a.watch.current()?.privateKeyPem, "key-2");
  assert.is(w.state(), "serving");
  assert.ok(Date.parse(w.identity()!.rotateAt!) > w.clock.now(), "the next rotation is scheduled");
  w.cache.close();
});

test("CA down at rotation: the old certificate is still served, retries back off doubling with jitter, and the renewal lands when the CA is back", async () => {
  const w = world({ retry: { initialMs: 1_000, maxMs: MINUTE } });
  const s = w.stream();
  await until("the first certificate", () => s.events.length === 1);
  w.script.push(failure("unavailable"), failure("unavailable"), failure("unavailable"));
  w.advancePastRotation();
  await until("the renewal failed", () => w.signedWith.length === 2 && w.state() === "retrying");
  assert.is(s.watch.current()?.version, "serial-1", "still serving the current certificate");
  // The n-th wait is drawn from [base/2, base), base = 1 s doubling: nothing before base/2, a retry by base.
  for (const base of [1_000, 2_000, 4_000]) {
    const attempts = w.signedWith.length;
    w.clock.advance(base / 2 - 1);
    await quiet();
    assert.is(w.signedWith.length, attempts, `no retry within ${base / 2 - 1} ms`);
    w.clock.advance(base / 2 + 1);
    await until(`a retry within ${base} ms`, () => w.signedWith.length === attempts + 1 && w.state() !== "issuing");
  }
  assert.equal(s.events, ["update serial-1", "update serial-5"], "nothing pushed while the CA was down, then the renewal");
  assert.is(w.state(), "serving");
  assert.is(w.identity()!.lastError, undefined, "a success clears the last error");
  assert.is(await metricValue(w.registry, "meshkey_sds_renewal_failures_total", { reason: "unavailable" }), 3);
  assert.is(await metricValue(w.registry, "meshkey_sds_csr_total", { result: "success" }), 2);
  w.cache.close();
});

test("renewal retries never sleep past a quarter of the validity left, even after the backoff reached its maximum", async () => {
  const w = world({ certTtlMs: 8 * MINUTE, retry: { initialMs: 200, maxMs: 10 * MINUTE } });
  const s = w.stream();
  await until("the first certificate", () => s.events.length === 1);
  const notAfter = Date.parse(w.identity()!.notAfter!);
  for (let i = 0; i < 30; i++) w.script.push(failure("unavailable"));
  w.advancePastRotation();
  await until("the renewal failed", () => w.signedWith.length === 2 && w.state() === "retrying");
  while (notAfter - w.clock.now() > 1_000) {
    const cap = Math.max(200, (notAfter - w.clock.now()) / 4);
    const attempts = w.signedWith.length;
    w.clock.advance(cap);
    await until(`a retry within ${cap} ms, ${notAfter - w.clock.now()} ms before expiry`, () => w.signedWith.length === attempts + 1 && w.state() !== "issuing");
  }
  assert.ok(w.signedWith.length < 30, `${w.signedWith.length} attempts: backoff, not a loop`);
  w.cache.close();
});

test("the CA rejects the token at renewal: the watchers are revoked, the identity awaits a fresh token, no retry loop", async () => {
  const w = world();
  const s = w.stream({ endsOnRevoke: false });
  await until("the first certificate", () => s.events.length === 1);
  w.script.push(failure("unauthenticated"));
  w.advancePastRotation();
  await until("the watcher revoked", () => s.events.length === 2);
  assert.match(s.events[1]!, /^revoked: CA rejected the workload token/);
  assert.is(w.state(), "awaitingToken");
  assert.is(w.identity()!.serialHex, "serial-1", "the certificate is kept for the next stream");
  w.clock.advance(HOUR);
  await quiet();
  assert.is(w.signedWith.length, 2, "not signed again with the rejected token");
  s.watch.cancel();
  assert.is(w.state(), "idle", "its stream ended: idle, still awaiting a token");
  w.cache.close();
});

test("a fresh token on a new stream renews the certificate that awaited one, signed with that token", async () => {
  const w = world();
  const s = w.stream({ token: "rejected" });
  await until("the first certificate", () => s.events.length === 1);
  w.script.push(failure("unauthenticated"));
  w.advancePastRotation();
  await until("the stream revoked and ended", () => s.events.length === 2 && w.state() === "idle");
  const fresh = w.stream({ token: "fresh" });
  assert.is(fresh.watch.current()?.version, "serial-1", "served the still-valid certificate meanwhile");
  await until("the renewal pushed", () => fresh.events.length === 1);
  assert.equal(fresh.events, ["update serial-3"]);
  assert.equal(w.signedWith, ["rejected", "rejected", "fresh"]);
  assert.is(w.state(), "serving");
  w.cache.close();
});

test("a token expired by rotation time: no CSR is sent, every watcher is revoked, token_expired is counted once", async () => {
  const w = world();
  const expiresAt = w.clock.now() + 10 * MINUTE;
  const s = w.stream({ token: "short", expiresAt, endsOnRevoke: false });
  await until("the first certificate", () => s.events.length === 1);
  w.advancePastRotation();
  await until("the watcher revoked", () => s.events.length === 2);
  assert.equal(s.events.slice(1), ["revoked: workload token expired; reconnect with a fresh token"]);
  assert.is(w.signedWith.length, 1, "no CSR with an expired token");
  assert.is(w.state(), "awaitingToken");
  w.clock.advance(HOUR);
  await quiet();
  assert.is(await metricValue(w.registry, "meshkey_sds_renewal_failures_total", { reason: "token_expired" }), 1);
  w.cache.close();
});

test("a stream bringing the same expired token is sent back unserved; a fresh token then renews", async () => {
  const w = world();
  const expiresAt = w.clock.now() + 10 * MINUTE;
  const s = w.stream({ token: "short", expiresAt });
  await until("the first certificate", () => s.events.length === 1);
  w.advancePastRotation();
  await until("revoked and ended", () => s.events.length === 2 && w.state() === "idle");
  const stale = w.stream({ token: "short", expiresAt });
  assert.is(stale.watch.current(), undefined, "nothing to send on a stream being sent back");
  await until("the stale stream sent back", () => stale.events.length === 1);
  assert.equal(stale.events, ["revoked: workload token expired; reconnect with a fresh token"]);
  assert.is(w.signedWith.length, 1);
  const fresh = w.stream({ token: "renewed", expiresAt: w.clock.now() + HOUR });
  await until("the renewal pushed", () => fresh.events.length === 1);
  assert.equal(fresh.events, ["update serial-2"]);
  assert.equal(w.signedWith, ["short", "renewed"]);
  assert.is(w.state(), "serving");
  w.cache.close();
});

test("a rotation further away than one timer holds happens at rotateAt, not when the first timer fires", async () => {
  const w = world({ certTtlMs: 100 * DAY });
  const s = w.stream();
  await until("the first certificate", () => s.events.length === 1);
  w.clock.advance(MAX_TIMER_MS + 1);
  await quiet();
  assert.is(w.signedWith.length, 1, "not renewed after ~25 days of a ~50-day wait");
  assert.is(w.state(), "serving");
  w.advancePastRotation(-2);
  await quiet();
  assert.is(w.signedWith.length, 1);
  w.clock.advance(3);
  await until("the renewal", () => s.events.length === 2);
  w.cache.close();
});

// ---------------------------------------------------------------------------------------------
test("an identity whose last stream ended is dropped idleTimeoutMs later, with its timer", async () => {
  const w = world({ idleTimeoutMs: 2 * MINUTE });
  const s = w.stream();
  await until("the first certificate", () => s.events.length === 1);
  s.watch.cancel();
  assert.is(w.state(), "idle");
  w.clock.advance(2 * MINUTE - 1);
  assert.is(w.state(), "idle", "kept until the timeout, for a reconnect");
  w.clock.advance(1);
  assert.is(w.state(), "gone");
  assert.is(w.clock.pending(), 0, "no timer left behind");
  w.cache.close();
});

test("a stream back before the idle timeout gets the cached certificate at once, with no CSR, and the identity stays", async () => {
  const w = world({ idleTimeoutMs: 2 * MINUTE });
  const s = w.stream();
  await until("the first certificate", () => s.events.length === 1);
  s.watch.cancel();
  w.clock.advance(2 * MINUTE - 1);
  const back = w.stream();
  assert.is(back.watch.current()?.version, "serial-1");
  assert.is(w.state(), "serving");
  w.clock.advance(4 * MINUTE);
  await quiet();
  assert.is(w.state(), "serving");
  assert.is(w.signedWith.length, 1);
  w.cache.close();
});

test("an idle identity whose rotation time comes before the idle timeout is dropped then, without a CSR", async () => {
  const w = world({ certTtlMs: MINUTE, idleTimeoutMs: 10 * MINUTE });
  const s = w.stream();
  await until("the first certificate", () => s.events.length === 1);
  s.watch.cancel();
  w.advancePastRotation();
  assert.is(w.state(), "gone");
  await quiet();
  assert.is(w.signedWith.length, 1, "nobody to renew for");
  w.cache.close();
});

test("a stream back to an identity whose failing renewal nobody waited for gets the old certificate, then the renewal a second later", async () => {
  const w = world({ retry: { initialMs: 1_000, maxMs: MINUTE } });
  const s = w.stream();
  await until("the first certificate", () => s.events.length === 1);
  w.script.push(failure("unavailable"));
  w.advancePastRotation();
  await until("the renewal failed", () => w.state() === "retrying");
  s.watch.cancel();
  w.clock.advance(1_000);
  assert.is(w.state(), "idle", "no retry for nobody");
  const back = w.stream();
  assert.is(back.watch.current()?.version, "serial-1");
  w.clock.advance(1_000);
  await until("the renewal pushed", () => back.events.length === 1);
  assert.equal(back.events, ["update serial-3"]);
  w.cache.close();
});

// ---------------------------------------------------------------------------------------------
test("a fetch waits for the first certificate and gets it; with no watcher the identity then idles", async () => {
  const w = world();
  const pending = w.fetch();
  assert.is(w.state(), "issuing");
  const item = await pending;
  assert.is(item?.version, "serial-1");
  assert.is(w.state(), "idle");
  assert.is((await w.fetch())?.version, "serial-1", "a second fetch is answered from the cache");
  assert.is(w.signedWith.length, 1);
  w.cache.close();
});

test("fetches waiting through a CA outage are answered when the CA is back (the certificate and the bundle derived from it)", async () => {
  const w = world({ retry: { initialMs: 1_000, maxMs: MINUTE } });
  w.script.push(failure("unavailable"), failure("unavailable"));
  const cert = w.fetch();
  const bundle = w.fetch({ name: "ROOTCA" });
  await until("the first attempt failed", () => w.state() === "retrying");
  w.clock.advance(1_000);
  await until("the second attempt failed", () => w.signedWith.length === 2 && w.state() === "retrying");
  w.clock.advance(2_000);
  assert.is((await cert)?.version, "serial-3");
  assert.is((await bundle)?.trustedCaPem, "ROOT\n");
  assert.is(w.signedWith.length, 3, "both fetches shared each attempt");
  w.cache.close();
});

test("a fetch waiting for a certificate the CA refuses is rejected with the CA's reason", async () => {
  const w = world();
  w.script.push(failure("invalid"));
  const err = await w.fetch().then(() => undefined, (e: unknown) => e);
  assert.instance(err, CaProviderError);
  assert.is((err as CaProviderError).kind, "invalid");
  assert.is(w.state(), "idle");
  assert.is(w.identity()!.lastError?.kind, "invalid");
  w.cache.close();
});

test("an aborted fetch is rejected with the signal's reason; the identity is no longer retried and idles", async () => {
  const w = world({ retry: { initialMs: 1_000, maxMs: MINUTE } });
  w.script.push(failure("unavailable"), failure("unavailable"));
  const abort = new AbortController();
  const pending = w.fetch({ signal: abort.signal }).then(() => undefined, (e: unknown) => e);
  await until("retrying", () => w.state() === "retrying");
  abort.abort(new Error("client went away"));
  assert.match(String(await pending), /client went away/);
  w.clock.advance(1_000);
  await quiet();
  assert.is(w.signedWith.length, 1, "no retry for nobody");
  assert.is(w.state(), "idle");
  w.cache.close();
});

test("closing the cache rejects waiting fetches and leaves no timer", async () => {
  const w = world();
  w.script.push(failure("unavailable"));
  const pending = w.fetch().then(() => undefined, (e: unknown) => e);
  await until("retrying", () => w.state() === "retrying");
  w.cache.close();
  const err = await pending;
  assert.instance(err, CaProviderError);
  assert.match((err as Error).message, /secret cache closed/);
  assert.is(w.clock.pending(), 0);
});

test.run();
