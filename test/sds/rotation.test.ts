// Rotation, token expiry, CA outages and coalescing, over the socket with short-lived
// certificates from the real CA.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as grpc from "@grpc/grpc-js";
import { CaProviderError } from "../../src/sds/index.js";
import { ackOf, createTokenSigner, deltaRequest, metricValue, openssl, pemBlocks, secretsOf, sleep, sotwRequest, startAgent, tlsOf, type AgentEnv } from "./sds-harness.js";
import type { DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";

const envs: AgentEnv[] = [];
async function agent(...args: Parameters<typeof startAgent>) {
  const e = await startAgent(...args);
  envs.push(e);
  return e;
}
test.after.each(async () => {
  for (const e of envs.splice(0)) await e.close();
});

function leafOf(r: DiscoveryResponse): { serial: string; notAfter: number } {
  const leaf = pemBlocks(tlsOf(secretsOf(r)[0]!).chainPem)[0]!;
  const serial = openssl(["x509", "-noout", "-serial"], leaf).trim();
  const end = openssl(["x509", "-noout", "-enddate"], leaf).trim().replace(/^notAfter=/, "");
  return { serial, notAfter: Date.parse(end) };
}

test("a 4 s certificate is renewed and pushed on the same stream before it expires (graceRatio 0.5)", async () => {
  const env = await agent({ certTtlSeconds: 4, cache: { graceRatio: 0.5 } });
  const token = await env.signer.mint("foo", "httpbin");
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  const first = leafOf(r1);
  const t1 = Date.now();
  s.send(ackOf(r1, ["default"]));
  const r2 = await s.next(6_000);
  const second = leafOf(r2);
  const elapsed = Date.now() - t1;
  assert.is.not(second.serial, first.serial);
  assert.ok(Date.now() < first.notAfter, "pushed before the old certificate expired");
  assert.ok(elapsed > 1_000, `not renewed long before half of the lifetime (${elapsed} ms)`);
  s.send(ackOf(r2, ["default"]));
  s.close();
});

test("a token that expired by rotation time ends the streams with UNAUTHENTICATED; a fresh token renews", async () => {
  const env = await agent({ certTtlSeconds: 6 });
  const shortToken = await env.signer.mint("foo", "httpbin", { expOffsetSeconds: 2 });
  const s = env.client.stream({ kind: "header", token: shortToken });
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  s.send(ackOf(r1, ["default"]));
  const st = await Promise.race([s.status, sleep(8_000).then(() => undefined)]);
  assert.ok(st, "stream ended");
  assert.is(st!.code, grpc.status.UNAUTHENTICATED);
  assert.match(st!.details, /expired/);
  // Envoy reconnects with the token now in its file.
  const fresh = await env.signer.mint("foo", "httpbin");
  const again = env.client.stream({ kind: "header", token: fresh });
  again.send(sotwRequest(["default"]));
  let r = await again.next();
  if (leafOf(r).serial === leafOf(r1).serial) {
    // The still-valid certificate first, then the renewal that the fresh token unblocked.
    again.send(ackOf(r, ["default"]));
    r = await again.next();
  }
  assert.is.not(leafOf(r).serial, leafOf(r1).serial);
  again.close();
});

test("reconnecting with the same expired token (inside the verifier's leeway) is sent back until a fresh one comes", async () => {
  const env = await agent({ certTtlSeconds: 6, signer: await createTokenSigner({ leewaySeconds: 60 }) });
  const shortToken = await env.signer.mint("foo", "httpbin", { expOffsetSeconds: 2 });
  const s = env.client.stream({ kind: "header", token: shortToken });
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  s.send(ackOf(r1, ["default"]));
  assert.is((await s.status).code, grpc.status.UNAUTHENTICATED);
  const stale = env.client.stream({ kind: "header", token: shortToken });
  stale.send(sotwRequest(["default"]));
  const st = await Promise.race([stale.status, sleep(3_000).then(() => ({ code: -1, details: "still open" }))]);
  assert.is(st.code, grpc.status.UNAUTHENTICATED, st.details);
  assert.match(st.details, /expired/);
  stale.close();
  const fresh = env.client.stream({ kind: "header", token: await env.signer.mint("foo", "httpbin") });
  fresh.send(sotwRequest(["default"]));
  let r = await fresh.next();
  if (leafOf(r).serial === leafOf(r1).serial) {
    fresh.send(ackOf(r, ["default"]));
    r = await fresh.next();
  }
  assert.is.not(leafOf(r).serial, leafOf(r1).serial);
  fresh.close();
});

test("a stream sent back for an expired token gets no secret before UNAUTHENTICATED (a response would reset Envoy's backoff)", async () => {
  const env = await agent({ certTtlSeconds: 6, signer: await createTokenSigner({ leewaySeconds: 60 }) });
  const shortToken = await env.signer.mint("foo", "httpbin", { expOffsetSeconds: 2 });
  const s = env.client.stream({ kind: "header", token: shortToken });
  s.send(sotwRequest(["default"]));
  s.send(ackOf(await s.next(), ["default"]));
  assert.is((await s.status).code, grpc.status.UNAUTHENTICATED);
  // Envoy reconnects with the same file, one stream per name: each is refused with no message.
  for (const name of ["default", "ROOTCA"]) {
    const stale = env.client.stream({ kind: "header", token: shortToken });
    stale.send(sotwRequest([name]));
    const st = await Promise.race([stale.status, sleep(3_000).then(() => ({ code: -1, details: "still open" }))]);
    assert.is(st.code, grpc.status.UNAUTHENTICATED, `${name}: ${st.details}`);
    assert.is(stale.received.length, 0, `${name}: a secret was sent on a stream that is being sent back`);
    stale.close();
  }
  const delta = env.client.delta({ kind: "header", token: shortToken });
  delta.send(deltaRequest({ resourceNamesSubscribe: ["default"] }));
  const dst = await Promise.race([delta.status, sleep(3_000).then(() => ({ code: -1, details: "still open" }))]);
  assert.is(dst.code, grpc.status.UNAUTHENTICATED, `delta: ${dst.details}`);
  assert.is(delta.received.length, 0, "delta: a secret was sent on a stream that is being sent back");
  delta.close();
});

test("a newer token on any stream replaces the cached one: no disconnection at rotation", async () => {
  const env = await agent({ certTtlSeconds: 6 });
  const shortToken = await env.signer.mint("foo", "httpbin", { expOffsetSeconds: 2 });
  const a = env.client.stream({ kind: "header", token: shortToken });
  a.send(sotwRequest(["default"]));
  const r1 = await a.next();
  a.send(ackOf(r1, ["default"]));
  const b = env.client.stream({ kind: "header", token: await env.signer.mint("foo", "httpbin") });
  b.send(sotwRequest(["ROOTCA"]));
  await b.next();
  const r2 = await a.next(8_000);
  assert.is.not(leafOf(r2).serial, leafOf(r1).serial, "renewed on the same stream");
  a.close();
  b.close();
});

test("CA down at start: the stream waits, the agent retries, the certificate arrives when the CA is back", async () => {
  const env = await agent();
  env.provider.failWith = new CaProviderError("connection refused", "unavailable");
  const token = await env.signer.mint("foo", "httpbin");
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"]));
  assert.is(await s.nextOrUndefined(700), undefined, "nothing while the CA is down");
  const failedCalls = env.provider.calls;
  assert.ok(failedCalls >= 2, `retried (${failedCalls} attempts)`);
  assert.ok((await metricValue(env.registry, "meshkey_sds_csr_total", { result: "unavailable" })) >= 2);
  env.provider.failWith = undefined;
  const r = await s.next(3_000);
  assert.equal(secretsOf(r).map((x) => x.name), ["default"]);
  s.close();
});

test("CA down at rotation: the cached certificate is still served, and renewal succeeds once it is back", async () => {
  const env = await agent({ certTtlSeconds: 5 });
  const token = await env.signer.mint("foo", "httpbin");
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  s.send(ackOf(r1, ["default"]));
  env.provider.failWith = new CaProviderError("CA restarting", "unavailable");
  const calls = env.provider.calls;
  await sleep(3_000); // past the renewal point (~2.5 s)
  assert.ok(env.provider.calls > calls + 1, "renewal attempted and retried");
  const fetched = await env.client.fetch({ kind: "header", token }, ["default"]);
  assert.is(leafOf(fetched).serial, leafOf(r1).serial, "the cached certificate is kept");
  assert.is(s.received.length, 0, "nothing pushed while the CA is down");
  env.provider.failWith = undefined;
  const r2 = await s.next(2_000);
  assert.is.not(leafOf(r2).serial, leafOf(r1).serial);
  assert.ok(Date.now() < leafOf(r1).notAfter, "renewed before expiry");
  s.close();
});

test("a CA that rejects the token fails the waiting stream with UNAUTHENTICATED (no retry loop)", async () => {
  const env = await agent();
  env.provider.failWith = new CaProviderError("token rejected by CA", "unauthenticated");
  const s = env.client.stream({ kind: "header", token: await env.signer.mint("foo", "httpbin") });
  s.send(sotwRequest(["default"]));
  const st = await s.status;
  assert.is(st.code, grpc.status.UNAUTHENTICATED);
  await sleep(300);
  assert.is(env.provider.calls, 1);
});

test("100 concurrent streams of one service account cause exactly one CSR and share one certificate", async () => {
  const env = await agent();
  const token = await env.signer.mint("foo", "httpbin");
  const streams = Array.from({ length: 100 }, () => env.client.stream({ kind: "header", token }));
  for (const s of streams) s.send(sotwRequest(["default"]));
  const responses = await Promise.all(streams.map((s) => s.next(10_000)));
  assert.is(env.provider.calls, 1);
  assert.is(new Set(responses.map((r) => leafOf(r).serial)).size, 1);
  const ident = env.server.debug().identities.find((i) => i.spiffeId === "spiffe://cluster.local/ns/foo/sa/httpbin")!;
  assert.is(ident.streams, 100);
  for (const s of streams) s.close();
});

test("an identity with no stream left is dropped after the idle timeout", async () => {
  const env = await agent({ cache: { idleTimeoutMs: 200 } });
  const s = env.client.stream({ kind: "header", token: await env.signer.mint("foo", "httpbin") });
  s.send(sotwRequest(["default"]));
  await s.next();
  assert.is(env.cache.debug().identities.length, 1);
  s.close();
  await s.status;
  await sleep(600);
  assert.is(env.cache.debug().identities.length, 0);
  assert.is(env.server.debug().streams.length, 0, "watches released");
});

test.run();
