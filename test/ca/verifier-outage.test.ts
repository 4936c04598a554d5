// A verifier outage is not a bad token: the JWKS URL, OIDC discovery or the TokenReview API
// server down, answering 5xx or timing out is a VerifierUnavailableError (retry later), never an
// AuthenticationError, and the verifier works again as soon as the server is back.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SignJWT, exportJWK, generateKeyPair, type JSONWebKeySet } from "jose";
import {
  AuthenticationError,
  VerifierUnavailableError,
  createJwtAuthenticator,
  createTokenReviewAuthenticator,
} from "../../src/ca/index.js";
import { startFlakyHttp, tokenReviewHandler, type FlakyHttpServer } from "../support/flaky-http.js";

const ISS = "https://issuer.outage.test";
const k1 = await generateKeyPair("ES256");
const k2 = await generateKeyPair("ES256");
const jwk1 = { ...(await exportJWK(k1.publicKey)), kid: "k1", alg: "ES256" };
const jwk2 = { ...(await exportJWK(k2.publicKey)), kid: "k2", alg: "ES256" };

function mint(key: Parameters<SignJWT["sign"]>[0], kid: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ "kubernetes.io": { namespace: "foo", serviceaccount: { name: "httpbin", uid: "u" } } })
    .setProtectedHeader({ alg: "ES256", kid })
    .setIssuer(ISS)
    .setSubject("system:serviceaccount:foo:httpbin")
    .setAudience("istio-ca")
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(key);
}

/** A JWKS server whose key set the test can change. */
async function jwksServer(keys: JSONWebKeySet["keys"]): Promise<FlakyHttpServer & { keys: JSONWebKeySet["keys"] }> {
  const state = { keys };
  let base = "";
  const s = await startFlakyHttp((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.url === "/jwks.json") res.end(JSON.stringify({ keys: state.keys }));
    else if (req.url === "/.well-known/openid-configuration") res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks.json` }));
    else res.writeHead(404).end("{}");
  });
  base = s.base;
  return Object.assign(s, state);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.unreachable("accepted");
  throw new Error("unreachable");
}

function assertUnavailable(err: Error, where: RegExp): void {
  assert.instance(err, VerifierUnavailableError, `${err.name}: ${err.message}`);
  assert.match(err.message, where);
  assert.not.match((err as VerifierUnavailableError).publicMessage, /127\.0\.0\.1|\//, "the client's message names no address or path");
}

test("JWKS URL down at start: tokens are 'verifier unavailable', and accepted once the URL is back", async () => {
  const s = await jwksServer([jwk1]);
  try {
    await s.down();
    const a = createJwtAuthenticator({ jwks: { url: `${s.base}/jwks.json` }, issuer: ISS, remoteKeySet: { unknownKidCooldownMs: 0 } });
    assert.is(a.ready!(), false, "not ready before the JWKS is loaded");
    assertUnavailable(await rejection(a.authenticate(await mint(k1.privateKey, "k1"))), /JWKS http:\/\/127\.0\.0\.1:\d+\/jwks\.json: ECONNREFUSED/);
    await s.up();
    assert.is((await a.authenticate(await mint(k1.privateKey, "k1"))).serviceAccount, "httpbin");
    assert.is(a.ready!(), true);
  } finally {
    await s.close();
  }
});

test("JWKS URL answering 503, or hanging past the deadline, is 'verifier unavailable', not a bad token", async () => {
  const s = await jwksServer([jwk1]);
  try {
    const a = createJwtAuthenticator({ jwks: { url: `${s.base}/jwks.json` }, issuer: ISS, remoteKeySet: { unknownKidCooldownMs: 0, timeoutMs: 200 } });
    const t = await mint(k1.privateKey, "k1");
    s.mode = "error-503";
    assertUnavailable(await rejection(a.authenticate(t)), /HTTP 503/);
    s.mode = "hang";
    assertUnavailable(await rejection(a.authenticate(t)), /timed out after 200 ms/);
    s.mode = "ok";
    assert.is((await a.authenticate(t)).namespace, "foo");
  } finally {
    await s.close();
  }
});

test("once loaded, the JWKS URL going down changes nothing for tokens of known keys (the last good keys stay)", async () => {
  const s = await jwksServer([jwk1]);
  try {
    // refreshMs 0: every call wants a background refresh, which fails while the server is down.
    const a = createJwtAuthenticator({
      jwks: { url: `${s.base}/jwks.json` }, issuer: ISS,
      remoteKeySet: { refreshMs: 0, unknownKidCooldownMs: 0 },
    });
    await a.warmUp!();
    assert.is(a.ready!(), true, "ready once warmed up");
    await s.down();
    for (let i = 0; i < 3; i++) assert.is((await a.authenticate(await mint(k1.privateKey, "k1"))).serviceAccount, "httpbin");
    assert.is(a.ready!(), true, "still ready: it holds good keys");
  } finally {
    await s.close();
  }
});

test("a token under a new key while the JWKS URL is down is 'verifier unavailable'; accepted when the URL is back with that key", async () => {
  const s = await jwksServer([jwk1]);
  try {
    const a = createJwtAuthenticator({ jwks: { url: `${s.base}/jwks.json` }, issuer: ISS, remoteKeySet: { unknownKidCooldownMs: 0 } });
    await a.warmUp!();
    const t2 = await mint(k2.privateKey, "k2");
    await s.down();
    assertUnavailable(await rejection(a.authenticate(t2)), /not in the cached JWKS and refreshing it failed/);
    s.keys.push(jwk2);
    await s.up();
    assert.is((await a.authenticate(t2)).serviceAccount, "httpbin");
  } finally {
    await s.close();
  }
});

test("tokens with unknown keys refresh the JWKS at most once per cooldown, and are refused as bad tokens when it is up", async () => {
  const s = await jwksServer([jwk1]);
  try {
    let clock = Date.now();
    const a = createJwtAuthenticator({ jwks: { url: `${s.base}/jwks.json` }, issuer: ISS, now: () => clock, remoteKeySet: { unknownKidCooldownMs: 5_000 } });
    await a.warmUp!();
    clock += 5_001; // past the cooldown of the warm-up fetch
    const before = s.requests;
    const forged = await mint(k2.privateKey, "k2"); // k2 is never published
    for (let i = 0; i < 20; i++) assert.instance(await rejection(a.authenticate(forged)), AuthenticationError);
    assert.is(s.requests - before, 1, "one refresh for 20 unknown-kid tokens inside the cooldown");
    clock += 5_001;
    assert.instance(await rejection(a.authenticate(forged)), AuthenticationError);
    assert.is(s.requests - before, 2, "one more after the cooldown");
  } finally {
    await s.close();
  }
});

test("OIDC discovery down is 'verifier unavailable'; discovery and keys work once the issuer is back", async () => {
  const s = await jwksServer([jwk1]);
  try {
    const a = createJwtAuthenticator({ jwks: { oidcIssuer: s.base }, issuer: ISS, remoteKeySet: { unknownKidCooldownMs: 0 } });
    s.mode = "error-503";
    assertUnavailable(await rejection(a.authenticate(await mint(k1.privateKey, "k1"))), /OIDC discovery .* HTTP 503/);
    await s.down();
    assertUnavailable(await rejection(a.authenticate(await mint(k1.privateKey, "k1"))), /OIDC discovery .* ECONNREFUSED/);
    s.mode = "ok";
    await s.up();
    assert.is((await a.authenticate(await mint(k1.privateKey, "k1"))).serviceAccount, "httpbin");
  } finally {
    await s.close();
  }
});

test("TokenReview API server down, 503 or hanging is 'verifier unavailable'; reviews work again once it is back", async () => {
  const s = await startFlakyHttp(tokenReviewHandler);
  try {
    const tr = createTokenReviewAuthenticator({ url: s.base, timeoutMs: 200 });
    assert.is((await tr.authenticate("foo/httpbin")).serviceAccount, "httpbin");
    await s.down();
    assertUnavailable(await rejection(tr.authenticate("foo/httpbin")), /TokenReview at http:\/\/127\.0\.0\.1:\d+ failed: (ECONNREFUSED|ECONNRESET)/);
    await s.up();
    s.mode = "error-503";
    assertUnavailable(await rejection(tr.authenticate("foo/httpbin")), /answered HTTP 503/);
    s.mode = "hang";
    assertUnavailable(await rejection(tr.authenticate("foo/httpbin")), /timed out/);
    s.mode = "ok";
    assert.is((await tr.authenticate("foo/httpbin")).namespace, "foo");
    assert.instance(await rejection(tr.authenticate("not-a-token")), AuthenticationError, "a token the API server rejects is still a bad token");
  } finally {
    await s.close();
  }
});

test.run();
