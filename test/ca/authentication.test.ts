// Token authentication: the JWT attack matrix, JWKS sources, Kubernetes identity claims, TokenReview.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as crypto from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { SignJWT, exportJWK, type JSONWebKeySet, type JWTPayload } from "jose";
import {
  AuthenticationError,
  VerifierUnavailableError,
  createJwtAuthenticator,
  createTokenReviewAuthenticator,
  openDevTokenIssuer,
  DEV_JWKS_FILE,
  openCertificateAuthority,
  type TokenAuthenticator,
} from "../../src/ca/index.js";
import type { BuiltinCertificateAuthority } from "../../src/ca/certificate-authority.js";
import { tempDir } from "./helpers.js";

const dir = tempDir();
const ISS = "https://issuer.test";
const key = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const otherKey = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const otherRsaKey = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const rsaKey = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwks: JSONWebKeySet = {
  keys: [
    { ...(await exportJWK(key.publicKey)), kid: "ec", alg: "ES256" },
    { ...(await exportJWK(rsaKey.publicKey)), kid: "rsa", alg: "RS256" },
  ],
};
const now = () => Math.floor(Date.now() / 1000);
const k8s = (ns: string, sa: string) => ({ "kubernetes.io": { namespace: ns, serviceaccount: { name: sa, uid: "u-1" } } });

async function token(opts: {
  claims?: JWTPayload;
  iss?: string | null;
  aud?: string | null;
  exp?: number | null;
  nbf?: number;
  iat?: number;
  sub?: string | null;
  signWith?: crypto.KeyObject;
  alg?: string;
  kid?: string;
} = {}): Promise<string> {
  const payload: JWTPayload = { ...k8s("foo", "httpbin"), ...opts.claims };
  const t = new SignJWT(payload).setProtectedHeader({ alg: opts.alg ?? "ES256", kid: opts.kid ?? "ec" }).setIssuedAt(opts.iat);
  if (opts.iss !== null) t.setIssuer(opts.iss ?? ISS);
  if (opts.aud !== null) t.setAudience(opts.aud ?? "istio-ca");
  if (opts.exp !== null) t.setExpirationTime(opts.exp ?? now() + 600);
  if (opts.nbf !== undefined) t.setNotBefore(opts.nbf);
  if (opts.sub !== null) t.setSubject(opts.sub ?? "system:serviceaccount:foo:httpbin");
  return t.sign(opts.signWith ?? key.privateKey);
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
const authn = createJwtAuthenticator({ jwks: { keys: jwks }, issuer: ISS });

test.after(() => dir.remove());

test("a valid service-account token yields the namespace, service account, subject and expiry", async () => {
  const exp = now() + 600;
  const caller = await authn.authenticate(await token({ exp }));
  assert.equal(caller, { namespace: "foo", serviceAccount: "httpbin", subject: "system:serviceaccount:foo:httpbin", expiresAt: new Date(exp * 1000) });
});

test("an RS256 token from the JWKS is accepted too", async () => {
  const caller = await authn.authenticate(await token({ alg: "RS256", kid: "rsa", signWith: rsaKey.privateKey }));
  assert.is(caller.serviceAccount, "httpbin");
});

test("a token expired within the 60 s leeway is still accepted", async () => {
  await authn.authenticate(await token({ exp: now() - 30 }));
});

test("the longest names Kubernetes allows are accepted: a 63-character namespace, a 253-character dotted service account", async () => {
  const ns = `n${"-".repeat(61)}n`;
  const sa = `${"s".repeat(63)}.`.repeat(3) + "s".repeat(61);
  assert.is(sa.length, 253);
  const caller = await authn.authenticate(await token({ claims: k8s(ns, sa), sub: null }));
  assert.equal([caller.namespace, caller.serviceAccount], [ns, sa]);
});

test("a token issued 30 s in the future (iat within the leeway) is accepted", async () => {
  const caller = await authn.authenticate(await token({ iat: now() + 30 }));
  assert.is(caller.serviceAccount, "httpbin");
});

// The authenticator's clock, not the machine's, decides: nbf = iat = T, exp = T + 600, leeway 60 s.
const T = 1_900_000_000;
const clockCases: Array<[string, number, RegExp | undefined]> = [
  ["61 s before nbf: refused (nbf)", T - 61, /"nbf" claim/],
  ["59 s before nbf: accepted", T - 59, undefined],
  ["59 s after exp: accepted", T + 659, undefined],
  ["61 s after exp: refused (expired)", T + 661, /expired|"exp" claim/],
];
for (const [what, at, refusal] of clockCases) {
  test(`with the authenticator's clock at ${what}`, async () => {
    const clocked = createJwtAuthenticator({ jwks: { keys: jwks }, issuer: ISS, now: () => at * 1000 });
    const t = await token({ iat: T, nbf: T, exp: T + 600 });
    const outcome = await clocked.authenticate(t).then(() => undefined, (e: Error) => e);
    if (refusal === undefined) assert.is(outcome, undefined, outcome?.message);
    else {
      assert.instance(outcome, AuthenticationError);
      assert.match(outcome!.message, refusal);
    }
  });
}

test("identity from sub alone (system:serviceaccount:<ns>:<sa>) when kubernetes.io is absent", async () => {
  const t = await new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: "ec" }).setIssuer(ISS).setAudience("istio-ca")
    .setExpirationTime(now() + 60).setSubject("system:serviceaccount:bar:sleep").sign(key.privateKey);
  const caller = await authn.authenticate(t);
  assert.is(caller.namespace, "bar");
  assert.is(caller.serviceAccount, "sleep");
});

const attacks: Array<[string, () => Promise<string>, RegExp]> = [
  ["a missing token", async () => "", /no token/],
  ["a token signed by another key", () => token({ signWith: otherKey.privateKey }), /signature verification failed/],
  ["an expired token", () => token({ exp: now() - 3600 }), /token expired at .* write a fresh token/],
  ["a token not valid before an hour from now", () => token({ nbf: now() + 3600 }), /"nbf" claim/],
  ["a token for another audience", () => token({ aud: "kubernetes.default.svc" }), /"aud" claim/],
  ["a token without audience", () => token({ aud: null }), /"aud" claim/],
  ["a token from another issuer", () => token({ iss: "https://evil.test" }), /"iss" claim/],
  ["a token without exp", () => token({ exp: null }), /"exp" claim/],
  [
    "an unsigned token (alg none)",
    async () => `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: ISS, aud: "istio-ca", exp: now() + 600, sub: "system:serviceaccount:foo:httpbin", ...k8s("foo", "httpbin") })}.`,
    /token rejected/,
  ],
  [
    "an HS256 token keyed with the public key",
    async () => {
      const secret = Buffer.from(key.publicKey.export({ format: "pem", type: "spki" }));
      return new SignJWT({ ...k8s("foo", "httpbin") }).setProtectedHeader({ alg: "HS256", kid: "ec" }).setIssuer(ISS).setAudience("istio-ca")
        .setExpirationTime(now() + 600).setSubject("system:serviceaccount:foo:httpbin").sign(secret);
    },
    /token rejected/,
  ],
  ["garbage", async () => "not.a.jwt", /token rejected/],
  ["random bytes", async () => crypto.randomBytes(64).toString("base64"), /token rejected/],
  ["a token without any service-account claim", () => token({ claims: { "kubernetes.io": undefined }, sub: "alice" }), /no service-account identity/],
  ["a token whose kubernetes.io lacks the service account", () => token({ claims: { "kubernetes.io": { namespace: "foo" } } }), /lacks namespace or serviceaccount\.name/],
  ["a token whose sub and kubernetes.io disagree", () => token({ sub: "system:serviceaccount:kube-system:admin" }), /claims disagree/],
  ["a token naming an impossible namespace", () => token({ claims: k8s("foo/sa/admin", "x"), sub: null }), /invalid namespace/],
  // kid confusion: the header names a trusted key, the signature is the attacker's
  ["a token whose kid names the RSA key, signed ES256 by another key", () => token({ kid: "rsa", signWith: otherKey.privateKey }), /token rejected/],
  ["a token whose kid names the EC key, signed RS256 by another key", () => token({ kid: "ec", alg: "RS256", signWith: otherRsaKey.privateKey }), /token rejected/],
  ["a token with an unknown kid, signed by another key", () => token({ kid: "attacker", signWith: otherKey.privateKey }), /token rejected/],
  [
    "a token without kid, signed by another key",
    () => new SignJWT({ ...k8s("foo", "httpbin") }).setProtectedHeader({ alg: "ES256" }).setIssuer(ISS).setAudience("istio-ca")
      .setExpirationTime(now() + 600).sign(otherKey.privateKey),
    /token rejected/,
  ],
  [
    "a token that carries its own key in a jwk header",
    async () => new SignJWT({ ...k8s("foo", "httpbin") })
      .setProtectedHeader({ alg: "ES256", kid: "ec", jwk: await exportJWK(otherKey.publicKey) }).setIssuer(ISS).setAudience("istio-ca")
      .setExpirationTime(now() + 600).sign(otherKey.privateKey),
    /token rejected/,
  ],
  [
    "a token whose jku points at the attacker's key set",
    () => new SignJWT({ ...k8s("foo", "httpbin") }).setProtectedHeader({ alg: "ES256", kid: "ec", jku: "https://evil.test/jwks.json" })
      .setIssuer(ISS).setAudience("istio-ca").setExpirationTime(now() + 600).sign(otherKey.privateKey),
    /signature verification failed/,
  ],
  // Kubernetes names: a namespace is a DNS label, a service account a DNS subdomain
  ["a token whose namespace has a dot", () => token({ claims: k8s("foo.bar", "httpbin"), sub: null }), /invalid namespace "foo\.bar".*DNS label/],
  ["a token whose namespace is 64 characters", () => token({ claims: k8s("n".repeat(64), "httpbin"), sub: null }), /invalid namespace.*at most 63/],
  ["a token whose service account is 254 characters", () => token({ claims: k8s("foo", `${"s".repeat(63)}.`.repeat(3) + "s".repeat(62)), sub: null }), /invalid service account.*at most 253/],
  ["a token whose service account has an empty label", () => token({ claims: k8s("foo", "a..b"), sub: null }), /invalid service account "a\.\.b"/],
  ["a token whose service account ends with a dot", () => token({ claims: k8s("foo", "httpbin."), sub: null }), /invalid service account/],
  ["a token whose sub names a namespace with a dot", () => token({ claims: { "kubernetes.io": undefined }, sub: "system:serviceaccount:kube.system:admin" }), /invalid namespace/],
  // a kubernetes.io claim that is there but says nothing is an error, never a fallback to sub
  ["a token whose kubernetes.io is an empty object (sub is valid)", () => token({ claims: { "kubernetes.io": {} } }), /"kubernetes\.io" lacks namespace/],
  ["a token whose kubernetes.io is a string (sub is valid)", () => token({ claims: { "kubernetes.io": "foo" } }), /"kubernetes\.io" must be an object, got string/],
  ["a token whose kubernetes.io is an array (sub is valid)", () => token({ claims: { "kubernetes.io": [] } }), /"kubernetes\.io" must be an object, got an array/],
  ["a token whose kubernetes.io is null (sub is valid)", () => token({ claims: { "kubernetes.io": null } }), /"kubernetes\.io" must be an object, got null/],
  ["a token whose serviceaccount is a string", () => token({ claims: { "kubernetes.io": { namespace: "foo", serviceaccount: "httpbin" } } }), /lacks namespace or serviceaccount\.name/],
  // iat: jose checks it only with maxTokenAge
  ["a token issued an hour in the future (iat)", () => token({ iat: now() + 3600 }), /"iat" claim .* is in the future/],
  ["an oversized token", async () => "a".repeat(20_000), /too large/],
];

async function refused(t: string, message: RegExp = /./): Promise<void> {
  try {
    await authn.authenticate(t);
  } catch (err) {
    assert.instance(err, AuthenticationError);
    assert.match((err as Error).message, message);
    return;
  }
  assert.unreachable("accepted");
}

test("a verified token with its signature altered is refused", async () => {
  const t = await token();
  await authn.authenticate(t);
  const sig = t.slice(t.lastIndexOf(".") + 1);
  const altered = `${t.slice(0, t.lastIndexOf(".") + 1)}${sig[0] === "A" ? "B" : "A"}${sig.slice(1)}`;
  await refused(altered, /signature verification failed/);
  await refused(`${t}.`);
});

test("each authentication of the same token gets its own caller object", async () => {
  const t = await token();
  const a = await authn.authenticate(t);
  a.namespace = "kube-system";
  const b = await authn.authenticate(t);
  assert.is(b.namespace, "foo");
});

for (const [what, make, message] of attacks) {
  test(`${what} is refused with AuthenticationError`, async () => {
    const t = await make();
    try {
      await authn.authenticate(t);
      assert.unreachable("accepted");
    } catch (err) {
      assert.instance(err, AuthenticationError);
      assert.match((err as Error).message, message);
      if (t.length > 20) assert.not.ok((err as Error).message.includes(t), "the token is not echoed");
    }
  });
}

test("allow-lists with none or HMAC algorithms are refused at construction", () => {
  for (const algs of [["none"], ["HS256"], ["ES256", "hs512"]]) {
    assert.throws(() => createJwtAuthenticator({ jwks: { keys: jwks }, algorithms: algs }), /not allowed/);
  }
});

test("a narrower allow-list refuses algorithms outside it", async () => {
  const onlyRs = createJwtAuthenticator({ jwks: { keys: jwks }, issuer: ISS, algorithms: ["RS256"] });
  await onlyRs.authenticate(await token()).then(() => assert.unreachable(), (e: Error) => assert.instance(e, AuthenticationError));
});

test("a custom audience is required when set", async () => {
  const a = createJwtAuthenticator({ jwks: { keys: jwks }, audience: "meshkey" });
  await a.authenticate(await token({ aud: "meshkey" }));
  await a.authenticate(await token()).then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /"aud"/));
});

// ------------------------------------------------ JWKS sources

async function withHttp(handler: http.RequestListener, body: (base: string) => Promise<void>) {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await body(base);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

test("JWKS from a file", async () => {
  const file = join(dir.path, "jwks.json");
  writeFileSync(file, JSON.stringify(jwks));
  const a = createJwtAuthenticator({ jwks: { file }, issuer: ISS });
  assert.is((await a.authenticate(await token())).namespace, "foo");
});

test("an unreadable JWKS file makes the verifier unavailable (not a bad token); only the log message names the file", async () => {
  const a = createJwtAuthenticator({ jwks: { file: join(dir.path, "nope.json") } });
  await a.authenticate(await token()).then(() => assert.unreachable(), (e: Error) => {
    assert.instance(e, VerifierUnavailableError);
    assert.match(e.message, /nope\.json cannot be read/);
    assert.not.match((e as VerifierUnavailableError).publicMessage, /nope\.json|\//);
  });
});

test("JWKS from a URL and from OIDC discovery (issuer checked against the discovered one)", async () => {
  let base = "";
  await withHttp((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.url === "/keys") res.end(JSON.stringify(jwks));
    else if (req.url === "/.well-known/openid-configuration") res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/keys` }));
    else res.writeHead(404).end("{}");
  }, async (b) => {
    base = b;
    const byUrl = createJwtAuthenticator({ jwks: { url: `${b}/keys` }, issuer: ISS });
    assert.is((await byUrl.authenticate(await token())).serviceAccount, "httpbin");
    const byOidc = createJwtAuthenticator({ jwks: { oidcIssuer: b } });
    assert.is((await byOidc.authenticate(await token({ iss: b }))).serviceAccount, "httpbin");
    await byOidc.authenticate(await token()).then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /"iss" claim/));
  });
});

// ------------------------------------------------ dev issuer

test("dev issuer tokens look like projected service-account tokens and verify with its jwks.json", async () => {
  const stateDir = join(dir.path, "dev");
  const issuer = await openDevTokenIssuer(stateDir);
  const t = await issuer.mint({ namespace: "foo", serviceAccount: "sleep", ttlSeconds: 120 });
  const claims = JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
  assert.is(claims.iss, issuer.issuer);
  assert.is(claims.sub, "system:serviceaccount:foo:sleep");
  assert.is(claims.aud, "istio-ca");
  assert.is((claims.exp as number) - (claims.iat as number), 120);
  assert.is(claims.nbf, claims.iat);
  const k = claims["kubernetes.io"] as { namespace: string; serviceaccount: { name: string; uid: string } };
  assert.is(k.namespace, "foo");
  assert.is(k.serviceaccount.name, "sleep");
  assert.match(k.serviceaccount.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  const fromFile = createJwtAuthenticator({ jwks: { file: join(stateDir, DEV_JWKS_FILE) }, issuer: issuer.issuer });
  assert.is((await fromFile.authenticate(t)).serviceAccount, "sleep");
  const reopened = await openDevTokenIssuer(stateDir);
  assert.equal(reopened.jwks, issuer.jwks, "the key is kept across restarts");
});

// ------------------------------------------------ TokenReview

test("TokenReview: asks the API server with audiences istio-ca and its own bearer, reads the service account", async () => {
  const seen: Array<{ auth: string | undefined; body: any; path: string | undefined }> = [];
  await withHttp((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const parsed = JSON.parse(body);
      seen.push({ auth: req.headers.authorization, body: parsed, path: req.url });
      const status =
        parsed.spec.token === "good"
          ? { authenticated: true, user: { username: "system:serviceaccount:foo:httpbin" }, audiences: ["istio-ca"] }
          : parsed.spec.token === "wrong-aud"
            ? { authenticated: true, user: { username: "system:serviceaccount:foo:httpbin" }, audiences: ["other"] }
            : parsed.spec.token === "user"
              ? { authenticated: true, user: { username: "alice" }, audiences: ["istio-ca"] }
              : { authenticated: false, error: "invalid bearer token" };
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", status }));
    });
  }, async (base) => {
    const tr: TokenAuthenticator = createTokenReviewAuthenticator({ url: base, bearerToken: "ca-sa-token" });
    const caller = await tr.authenticate("good");
    assert.equal(caller, { namespace: "foo", serviceAccount: "httpbin", subject: "system:serviceaccount:foo:httpbin", expiresAt: undefined });
    assert.is(seen[0]!.path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert.is(seen[0]!.auth, "Bearer ca-sa-token");
    assert.equal(seen[0]!.body, { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token: "good", audiences: ["istio-ca"] } });
    for (const [t, msg] of [["bad", /invalid bearer token/], ["wrong-aud", /not valid for audience istio-ca/], ["user", /"alice" is not a service account/], ["", /no token/]] as const) {
      await tr.authenticate(t).then(() => assert.unreachable(t), (e: Error) => {
        assert.instance(e, AuthenticationError);
        assert.match(e.message, msg);
      });
    }
  });
});

test("TokenReview: an unreachable API server makes the verifier unavailable, not the token bad", async () => {
  const tr = createTokenReviewAuthenticator({ url: "http://127.0.0.1:1" });
  await tr.authenticate("x").then(() => assert.unreachable(), (e: Error) => {
    assert.instance(e, VerifierUnavailableError);
    assert.match(e.message, /TokenReview at http:\/\/127\.0\.0\.1:1 failed/);
  });
});

test("TokenReview over HTTPS trusts the API server through caPem and refuses it without", async () => {
  const ca = (await openCertificateAuthority({ stateDir: join(dir.path, "tr-ca"), trustDomain: "cluster.local" })) as BuiltinCertificateAuthority;
  const cert = ca.issueServerCertificate({ dnsNames: ["localhost"], ips: ["127.0.0.1"] });
  const server = https.createServer({ key: cert.privateKeyPem, cert: cert.certChainPem }, (req, res) => {
    req.resume();
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ status: { authenticated: true, user: { username: "system:serviceaccount:foo:sleep" }, audiences: ["istio-ca"] } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const trusted = createTokenReviewAuthenticator({ url, caPem: ca.rootCertPem });
    assert.is((await trusted.authenticate("t")).serviceAccount, "sleep");
    const untrusted = createTokenReviewAuthenticator({ url });
    await untrusted.authenticate("t").then(() => assert.unreachable(), (e: Error) => assert.instance(e, VerifierUnavailableError));
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test.run();
