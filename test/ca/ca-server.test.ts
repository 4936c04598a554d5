// IstioCertificateService/CreateCertificate over TLS, called by a real @grpc/grpc-js client.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as crypto from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { SignJWT, exportJWK, type JWTPayload } from "jose";
import { Registry } from "prom-client";
import {
  createJwtAuthenticator,
  createKeyAndCsr,
  openCertificateAuthority,
  openDevTokenIssuer,
  readCertificateInfo,
  startCaServer,
  type CertificateAuthority,
  type DevTokenIssuer,
} from "../../src/ca/index.js";
import { openssl, tempDir, verifyChain, writeIn } from "./helpers.js";

const dir = tempDir();
const def = protoLoader.loadSync("istio/v1/auth/ca.proto", { includeDirs: ["proto"], longs: String });
const pkg = grpc.loadPackageDefinition(def) as any;
const ServiceClient = pkg.istio.v1.auth.IstioCertificateService as grpc.ServiceClientConstructor;

let ca: CertificateAuthority;
let issuer: DevTokenIssuer;
let server: Awaited<ReturnType<typeof startCaServer>>;
let client: grpc.Client & { CreateCertificate: Function };
const registry = new Registry();
const trusted = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });

test.before(async () => {
  ca = await openCertificateAuthority({ stateDir: `${dir.path}/state`, trustDomain: "cluster.local", maxCertTtlSeconds: 7 * 86400 });
  issuer = await openDevTokenIssuer(`${dir.path}/state`);
  // Trusts the dev issuer and a test key, so that the test can sign tokens with any claims.
  const testJwk = { ...(await exportJWK(trusted.publicKey)), kid: "test", alg: "ES256" };
  const authenticator = createJwtAuthenticator({ jwks: { keys: { keys: [...issuer.jwks.keys, testJwk] } }, issuer: issuer.issuer });
  server = await startCaServer({ ca, authenticator, listen: { host: "127.0.0.1", port: 0 }, registry });
  client = new ServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(ca.rootCertPem))) as any;
});

test.after(async () => {
  client?.close();
  await server?.close();
  dir.remove();
});

interface Reply {
  err: grpc.ServiceError | null;
  chain: string[];
}
function call(csr: string, token: string | undefined, validityDuration = 0, c = client): Promise<Reply> {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set("authorization", token);
  return new Promise((resolve) => {
    c.CreateCertificate({ csr, validityDuration, subjectId: "ignored" }, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: { certChain?: string[] }) =>
      resolve({ err, chain: res?.certChain ?? [] }),
    );
  });
}

test("a token signed by a trusted key with all claims is accepted (the matrix below differs by one thing)", async () => {
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const { err } = await call(csrPem, await bearer());
  assert.is(err, null);
});

test("a workload with a valid token gets leaf + root, the SAN from its token, and openssl verifies the chain", async () => {
  const key = writeIn(dir.path, "k.pem", crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ format: "pem", type: "pkcs8" }).toString());
  const forged = openssl(["req", "-new", "-key", key, "-subj", "/CN=x", "-addext", "subjectAltName=URI:spiffe://cluster.local/ns/istio-system/sa/istiod"]).out;
  const token = await issuer.mint({ namespace: "foo", serviceAccount: "httpbin" });
  const { err, chain } = await call(forged, `Bearer ${token}`);
  assert.is(err, null);
  assert.is(chain.length, 2);
  assert.is(chain[1], ca.rootCertPem);
  assert.equal(readCertificateInfo(chain[0]!).uriSans, ["spiffe://cluster.local/ns/foo/sa/httpbin"]);
  for (const p of ["sslclient", "sslserver"] as const) assert.is(verifyChain(dir.path, chain, p).status, 0);
});

test("the requested validity is honoured", async () => {
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const { err, chain } = await call(csrPem, `Bearer ${await issuer.mint({ namespace: "foo", serviceAccount: "sleep" })}`, 7200);
  assert.is(err, null);
  const info = readCertificateInfo(chain[0]!);
  assert.ok(Math.abs(info.notAfter.getTime() - Date.now() - 7200_000) < 5_000);
});

test("the server certificate is issued by the CA for istiod.istio-system.svc, localhost and the listen IP", async () => {
  const text = openssl(["x509", "-noout", "-ext", "subjectAltName"], server.tlsCertPem).out;
  for (const san of ["DNS:istiod.istio-system.svc", "DNS:localhost", "IP Address:127.0.0.1"]) assert.ok(text.includes(san), text);
  assert.is(verifyChain(dir.path, [server.tlsCertPem, ca.rootCertPem], "sslserver").status, 0);
  for (const name of ["istiod.istio-system.svc", "localhost"]) {
    const c = new ServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(ca.rootCertPem)), {
      "grpc.ssl_target_name_override": name,
      "grpc.default_authority": name,
    }) as any;
    const { csrPem } = await createKeyAndCsr("ec-p256");
    const { err } = await call(csrPem, `Bearer ${await issuer.mint({ namespace: "foo", serviceAccount: "sleep" })}`, 0, c);
    c.close();
    assert.is(err, null, `TLS as ${name}`);
  }
});

const other = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const now = () => Math.floor(Date.now() / 1000);
const claims = { "kubernetes.io": { namespace: "foo", serviceaccount: { name: "httpbin" } } };
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
/** A bearer token signed with `key` (the trusted test key by default), claims overridable. */
async function bearer(over: JWTPayload = {}, key = trusted.privateKey, alg = "ES256"): Promise<string> {
  const payload: JWTPayload = { ...claims, iss: issuer.issuer, aud: "istio-ca", exp: now() + 600, sub: "system:serviceaccount:foo:httpbin", ...over };
  return `Bearer ${await new SignJWT(payload).setProtectedHeader({ alg, kid: "test" }).sign(key)}`;
}
const unauthenticated: Array<[string, () => Promise<string | undefined>]> = [
  ["no authorization header", async () => undefined],
  ["a Basic authorization header", async () => "Basic Zm9vOmJhcg=="],
  ["an empty bearer", async () => "Bearer "],
  ["garbage", async () => "Bearer not-a-jwt"],
  ["a token signed by another key", () => bearer({}, other.privateKey)],
  ["an expired token", () => bearer({ exp: now() - 3600 })],
  ["a token valid only from an hour from now", () => bearer({ nbf: now() + 3600 })],
  ["a token for another audience", async () => `Bearer ${await issuer.mint({ namespace: "foo", serviceAccount: "httpbin", audience: "kubernetes.default.svc" })}`],
  ["a token from another issuer", () => bearer({ iss: "https://evil.test" })],
  ["a token without service-account claims", () => bearer({ "kubernetes.io": undefined, sub: "alice" })],
  ["an alg none token", async () => `Bearer ${b64({ alg: "none" })}.${b64({ ...claims, iss: issuer.issuer, aud: "istio-ca", exp: now() + 60 })}.`],
  ["an HS256 token keyed with the public JWK", () => bearer({}, crypto.createSecretKey(Buffer.from(JSON.stringify(issuer.jwks.keys[0]))), "HS256")],
  ["a token issued an hour in the future (iat)", () => bearer({ iat: now() + 3600 })],
  ["a token whose kubernetes.io is a string, with a valid sub", () => bearer({ "kubernetes.io": "foo" })],
  ["a token naming a dotted namespace", () => bearer({ "kubernetes.io": { namespace: "kube.system", serviceaccount: { name: "admin" } }, sub: "system:serviceaccount:kube.system:admin" })],
  [
    "a token whose kid names the dev issuer's key, signed by another key",
    async () => `Bearer ${await new SignJWT({ ...claims, iss: issuer.issuer, aud: "istio-ca", exp: now() + 600 })
      .setProtectedHeader({ alg: "ES256", kid: issuer.jwks.keys[0]!.kid! }).sign(other.privateKey)}`,
  ],
];
for (const [what, make] of unauthenticated) {
  test(`${what} → UNAUTHENTICATED and no certificate`, async () => {
    const { csrPem } = await createKeyAndCsr("ec-p256");
    const { err, chain } = await call(csrPem, await make());
    assert.is(err?.code, grpc.status.UNAUTHENTICATED, err?.message);
    assert.equal(chain, []);
  });
}

test("a CSR with a bad signature → INVALID_ARGUMENT", async () => {
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  der[der.length - 3]! ^= 0x40;
  const bad = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
  const { err } = await call(bad, `Bearer ${await issuer.mint({ namespace: "foo", serviceAccount: "httpbin" })}`);
  assert.is(err?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err!.details, /bad CSR/);
});

test("a TTL above --max-cert-ttl → INVALID_ARGUMENT naming the maximum", async () => {
  const { csrPem } = await createKeyAndCsr("ec-p256");
  const { err } = await call(csrPem, `Bearer ${await issuer.mint({ namespace: "foo", serviceAccount: "httpbin" })}`, 8 * 86400);
  assert.is(err?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err!.details, /above the maximum of 604800s/);
});

test("metrics count CSRs by result and time the signing", async () => {
  const m = await registry.getSingleMetricAsString("meshkey_ca_csr_total");
  const count = (r: string) => Number(new RegExp(`result="${r}"} (\\d+)`).exec(m)?.[1] ?? 0);
  assert.is(count("issued"), 5);
  assert.is(count("unauthenticated"), unauthenticated.length);
  assert.is(count("invalid"), 2);
  const h = await registry.getSingleMetricAsString("meshkey_ca_signing_seconds");
  assert.match(h, /meshkey_ca_signing_seconds_count 5\b/);
});

test("a CSR whose key has explicit curve parameters (openssl -param_enc explicit) → INVALID_ARGUMENT and no certificate", async () => {
  const key = `${dir.path}/explicit.pem`;
  assert.is(openssl(["ecparam", "-name", "prime256v1", "-genkey", "-param_enc", "explicit", "-out", key]).status, 0);
  const csr = openssl(["req", "-new", "-key", key, "-subj", "/CN=x"]);
  const { err, chain } = await call(csr.out, `Bearer ${await issuer.mint({ namespace: "foo", serviceAccount: "httpbin" })}`);
  assert.is(err?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err!.details, /explicit curve parameters/);
  assert.equal(chain, []);
});

test("200 concurrent requests from 4 connections each get their own certificate", async () => {
  const clients = Array.from({ length: 4 }, () => new ServiceClient(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(ca.rootCertPem))) as any);
  try {
    const token = `Bearer ${await issuer.mint({ namespace: "bar", serviceAccount: "sleep" })}`;
    const csrs = await Promise.all(Array.from({ length: 200 }, () => createKeyAndCsr("ec-p256")));
    const replies = await Promise.all(csrs.map((c, i) => call(c.csrPem, token, 0, clients[i % 4])));
    const serials = new Set<string>();
    for (const { err, chain } of replies) {
      assert.is(err, null);
      const info = readCertificateInfo(chain[0]!);
      assert.equal(info.uriSans, ["spiffe://cluster.local/ns/bar/sa/sleep"]);
      serials.add(info.serialHex);
    }
    assert.is(serials.size, 200);
  } finally {
    for (const c of clients) c.close();
  }
});

test("the server's own certificate is renewed at half-life while it runs; new TLS connections get the new one", async () => {
  const tls = await import("node:tls");
  const short = await startCaServer({
    ca,
    authenticator: createJwtAuthenticator({ jwks: { keys: issuer.jwks }, issuer: issuer.issuer }),
    listen: { host: "127.0.0.1", port: 0 },
    serverCertTtlSeconds: 4,
  });
  const peerSerial = () =>
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port: short.port, ca: ca.rootCertPem, servername: "localhost", ALPNProtocols: ["h2"] }, () => {
        const serial = s.getPeerCertificate().serialNumber;
        s.destroy();
        resolve(serial);
      });
      s.on("error", reject);
    });
  try {
    const first = await peerSerial();
    const firstPem = short.tlsCertPem;
    await new Promise((r) => setTimeout(r, 2_600));
    const second = await peerSerial();
    assert.is.not(second, first, "the served certificate was not renewed");
    assert.is.not(short.tlsCertPem, firstPem, "tlsCertPem must show the renewed certificate");
    assert.is(verifyChain(dir.path, [short.tlsCertPem, ca.rootCertPem], "sslserver").status, 0);
  } finally {
    await short.close();
  }
});

test.run();
