// The node agent during a token-verifier outage (TokenReview API server or JWKS URL down): it keeps
// serving the valid certificate, retries the renewal with backoff, answers new streams UNAVAILABLE
// (never UNAUTHENTICATED, never with the server's addresses), closes nothing, and renews once the
// verifier is back.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as grpc from "@grpc/grpc-js";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { createJwtAuthenticator, createTokenReviewAuthenticator, type TokenAuthenticator } from "../../src/ca/index.js";
import { ackOf, metricValue, secretsOf, sotwRequest, startAgent, tlsOf, TEST_ISSUER, type AgentEnv, type TokenSigner } from "./sds-harness.js";
import { startFlakyHttp, tokenReviewHandler, type FlakyHttpServer } from "../support/flaky-http.js";
import { readCertificateInfo } from "../../src/ca/index.js";
import type { DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";

const SPIFFE = "spiffe://cluster.local/ns/foo/sa/httpbin";
const serialOf = (r: DiscoveryResponse) => readCertificateInfo(tlsOf(secretsOf(r)[0]!).chainPem).serialHex;

function signerOver(authenticator: TokenAuthenticator, token: string): TokenSigner {
  return {
    authenticator,
    mint: async () => token,
    mintWithOtherKey: async () => "x",
    unsigned: () => "x",
  };
}

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function outageScenario(verifier: FlakyHttpServer, env: AgentEnv, token: string): Promise<void> {
  const cred = { kind: "header", token } as const;
  const s = env.client.stream(cred);
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  s.send(ackOf(r1, ["default"]));

  await verifier.down();
  const attempts = env.provider.calls;
  void env.cache.rotate(SPIFFE); // renewal due while the verifier is down
  await waitUntil("the renewal to be retried with backoff", () => env.provider.calls >= attempts + 3);
  const ident = env.server.debug().identities.find((i) => i.spiffeId === SPIFFE)!;
  assert.is(ident.lastError?.kind, "unavailable", "the failed renewal is classified unavailable");
  assert.is(ident.serialHex, serialOf(r1), "the valid certificate is still the one served");
  assert.is(s.received.length, 0, "nothing pushed, and the stream is not closed");

  const fresh = env.client.stream(cred);
  fresh.send(sotwRequest(["default"]));
  const st = await fresh.status;
  st.details = decodeURIComponent(st.details); // connect-node percent-encodes grpc-message
  assert.is(st.code, grpc.status.UNAVAILABLE, `a new stream gets UNAVAILABLE, got ${st.code}: ${st.details}`);
  assert.match(st.details, /token verifier unavailable, retry later/, st.details);
  assert.not.match(st.details, /127\.0\.0\.1|\/apis|\.json/, "no server address or path reaches the client");
  const fetchErr = await env.client.fetch(cred, ["default"]).then(() => undefined, (e: grpc.ServiceError) => e);
  assert.is(fetchErr?.code, grpc.status.UNAVAILABLE, "FetchSecrets too");
  assert.ok((await metricValue(env.registry, "meshkey_sds_auth_failures_total", { reason: "error" })) >= 2);

  await verifier.up();
  const r2 = await s.next(5_000);
  assert.is.not(serialOf(r2), serialOf(r1), "renewed on the same stream once the verifier is back");
  const again = await env.client.fetch(cred, ["default"]);
  assert.is(serialOf(again), serialOf(r2), "new calls are served again");
  s.close();
}

test("TokenReview API server down at rotation: the certificate keeps serving, new streams get UNAVAILABLE, renewal lands when it is back", async () => {
  const tr = await startFlakyHttp(tokenReviewHandler);
  const env = await startAgent({ signer: signerOver(createTokenReviewAuthenticator({ url: tr.base, timeoutMs: 500 }), "foo/httpbin") });
  try {
    await outageScenario(tr, env, "foo/httpbin");
  } finally {
    await env.close();
    await tr.close();
  }
});

test("JWKS URL down when a token under a new key arrives: UNAVAILABLE, not UNAUTHENTICATED; served once the URL is back", async () => {
  const k1 = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(k1.publicKey)), kid: "k1", alg: "ES256" };
  const jwksHttp = await startFlakyHttp((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await jwksHttp.down(); // never loaded: as if the issuer's key rotated during the outage
  const authenticator = createJwtAuthenticator({
    jwks: { url: `${jwksHttp.base}/jwks.json` }, issuer: TEST_ISSUER, remoteKeySet: { unknownKidCooldownMs: 0 },
  });
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ "kubernetes.io": { namespace: "foo", serviceaccount: { name: "httpbin", uid: "u" } } })
    .setProtectedHeader({ alg: "ES256", kid: "k1" }).setIssuer(TEST_ISSUER).setSubject("system:serviceaccount:foo:httpbin")
    .setAudience("istio-ca").setIssuedAt(now).setExpirationTime(now + 600).sign(k1.privateKey);
  const env = await startAgent({ signer: signerOver(authenticator, token) });
  try {
    const s = env.client.stream({ kind: "header", token });
    s.send(sotwRequest(["default"]));
    const st = await s.status;
    st.details = decodeURIComponent(st.details);
    assert.is(st.code, grpc.status.UNAVAILABLE, `got ${st.code}: ${st.details}`);
    assert.not.match(st.details, /127\.0\.0\.1|jwks\.json/);
    await jwksHttp.up();
    const again = env.client.stream({ kind: "header", token });
    again.send(sotwRequest(["default"]));
    assert.ok(serialOf(await again.next()), "served once the JWKS is reachable");
    again.close();
  } finally {
    await env.close();
    await jwksHttp.close();
  }
});

test.run();
