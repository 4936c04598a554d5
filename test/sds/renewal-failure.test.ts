// What the node agent tells an operator while renewals fail (CA unreachable): a counter of
// failed renewals by reason, the seconds each identity's served certificate has left, and a
// warn log naming the CA; and a retry backoff that never sleeps past the certificate's expiry.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { openCertificateAuthority } from "../../src/ca/index.js";
import { CaProviderError, createBuiltinCaProvider, createSecretCache, type CaProvider, type SecretItem } from "../../src/sds/index.js";
import { createTokenSigner, metricValue } from "./sds-harness.js";

const ENDPOINT = "istio CA 127.0.0.1:15999";

async function setup(certTtlSeconds: number, retry: { initialMs: number; maxMs: number }) {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-renewal-"));
  const signer = await createTokenSigner();
  const ca = await openCertificateAuthority({ stateDir: join(dir, "ca"), trustDomain: "cluster.local" });
  const inner = createBuiltinCaProvider({ ca, authenticator: signer.authenticator });
  const state = { down: false, calls: 0 };
  const provider: CaProvider = {
    endpoint: ENDPOINT,
    async sign(csr, token, ttl) {
      state.calls++;
      if (state.down) throw new CaProviderError(`${ENDPOINT} unavailable: connect ECONNREFUSED`, "unavailable");
      return inner.sign(csr, token, ttl);
    },
  };
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "warn" }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const registry = new Registry();
  const cache = createSecretCache({ caProvider: provider, trustDomain: "cluster.local", rootCertPem: () => ca.rootCertPem, certTtlSeconds, registry, logger, retry });
  const updates: SecretItem[] = [];
  const watchIdentity = async (ns: string, sa: string) => {
    const token = await signer.mint(ns, sa);
    const caller = await signer.authenticator.authenticate(token);
    const w = cache.watch(caller, token, "default", { onUpdate: (i) => updates.push(i), onRevoked: () => {}, onFailed: () => {} })!;
    return w;
  };
  return {
    state, cache, registry, logs, updates, watchIdentity,
    close() {
      cache.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const until = async (what: string, f: () => boolean | Promise<boolean>, ms: number) => {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test("a renewal that cannot reach the CA counts in meshkey_sds_renewal_failures_total{reason}, logs a warn naming the CA and the time left, and each identity's expiry gauge counts down", async () => {
  const env = await setup(4, { initialMs: 50, maxMs: 400 });
  try {
    const a = await env.watchIdentity("foo", "sleep");
    const b = await env.watchIdentity("bar", "httpbin");
    await until("both first certificates", () => a.current() !== undefined && b.current() !== undefined, 5_000);
    env.state.down = true;
    const ids = ["spiffe://cluster.local/ns/foo/sa/sleep", "spiffe://cluster.local/ns/bar/sa/httpbin"];
    // Two failures may both be one identity's: wait for a failed renewal of each, by its log line.
    await until("a failed renewal of each", () => ids.every((id) => env.logs.some((l) => l.spiffeId === id && l.ca === ENDPOINT)), 5_000);
    assert.ok((await metricValue(env.registry, "meshkey_sds_renewal_failures_total", { reason: "unavailable" })) >= 2);
    for (const id of ids) {
      const left = await metricValue(env.registry, "meshkey_sds_identity_cert_expiry_seconds", { spiffe_id: id });
      assert.ok(left > 0 && left < 2.5, `${id}: ${left} s left`);
      const warn = env.logs.find((l) => l.spiffeId === id && l.ca === ENDPOINT);
      assert.ok(warn, `${id}: no warn log naming the CA`);
      assert.is(warn.level, 40);
      assert.ok((warn.expiresInSeconds as number) >= 0 && (warn.expiresInSeconds as number) <= 3);
      assert.match(String(warn.msg), /still serving the current certificate, which expires in \d+ s/);
    }
    assert.is(await metricValue(env.registry, "meshkey_sds_renewal_failures_total", { reason: "unauthenticated" }), 0);
    a.cancel();
    b.cancel();
  } finally {
    env.close();
  }
});

test("the retry backoff never sleeps past expiry: a CA back shortly before the certificate expires is used in time", async () => {
  // Uncapped, a 200 ms backoff doubling to 30 s would sleep ~3 s after 2 s of failures;
  // the certificate has less than that left.
  const env = await setup(8, { initialMs: 200, maxMs: 30_000 });
  try {
    const w = await env.watchIdentity("foo", "sleep");
    await until("a first certificate", () => w.current() !== undefined, 5_000);
    const first = w.current()!;
    env.state.down = true;
    const notAfter = Date.now() + 8_000;
    await until("the renewal is failing", async () => (await metricValue(env.registry, "meshkey_sds_renewal_failures_total", { reason: "unavailable" })) >= 1, 8_000);
    // Down until ~1.2 s before expiry.
    await until("1.2 s before expiry", () => Date.now() > notAfter - 1_200, 8_000);
    const callsWhileDown = env.state.calls;
    env.state.down = false;
    await until("a renewed certificate", () => env.updates.some((u) => u.version !== first.version), 3_000);
    assert.ok(Date.now() < notAfter, "renewed before expiry");
    assert.ok(callsWhileDown < 30, `${callsWhileDown} sign attempts: backoff, not a loop`);
    w.cancel();
  } finally {
    env.close();
  }
});

test.run();
