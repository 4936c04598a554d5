// The authentication of one SDS call, alone: each way a call can fail maps to one gRPC
// code and message, one auth-failure reason in the metric, and one log line that names
// what the caller presented (its claims, never the token) and what was expected.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Writable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { Registry } from "prom-client";
import { AuthenticationError, VerifierUnavailableError, type AuthenticatedCaller, type TokenAuthenticator } from "../../src/sds/ca-types.js";
import { createSdsMetrics } from "../../src/sds/sds-metrics.js";
import { createStreamAuthenticator } from "../../src/sds/stream-authenticator.js";
import { metricValue } from "./sds-harness.js";

const CALLER: AuthenticatedCaller = { namespace: "foo", serviceAccount: "httpbin", subject: "system:serviceaccount:foo:httpbin", expiresAt: undefined };
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
/** A JWT-shaped token whose claims the refusal log may show (unverified). */
const JWT = `${b64({ alg: "ES256" })}.${b64({ iss: "https://issuer.test", sub: "system:serviceaccount:foo:httpbin" })}.c2ln`;
const binHeader = (token: string) => Buffer.from(token).toString("base64");

function setup(verify: (token: string) => Promise<AuthenticatedCaller>) {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const log = pino({ level: "debug" }, new Writable({ write: (c, _e, cb) => (raw.push(String(c)), lines.push(JSON.parse(String(c))), cb()) }));
  const registry = new Registry();
  const verified: string[] = [];
  const authenticator: TokenAuthenticator = {
    authenticate: (token) => (verified.push(token), verify(token)),
    expects: () => ({ issuer: "https://issuer.test", audience: "istio-ca", keys: "file jwks.json" }),
  };
  const auth = createStreamAuthenticator({ authenticator, log, metrics: createSdsMetrics(registry) });
  return { auth, lines, raw, registry, verified };
}

interface Case {
  name: string;
  headers: Record<string, string>;
  verify: (token: string) => Promise<AuthenticatedCaller>;
  code: Code;
  message: RegExp;
  reason: "missing" | "invalid" | "error";
  level: number; // pino: 40 warn, 50 error
  log: string;
  /** Words the message sent to the client must not carry (server-side detail). */
  hidden?: string[];
}

const never = async (): Promise<AuthenticatedCaller> => {
  throw new Error("the verifier must not be called");
};

const cases: Case[] = [
  {
    name: "no token header at all",
    headers: {},
    verify: never,
    code: Code.Unauthenticated,
    message: /^\[unauthenticated\] missing workload token: send it in istio_sds_credentials_header-bin or authorization: Bearer$/,
    reason: "missing",
    level: 40,
    log: "SDS call without a token",
  },
  {
    name: "an empty token header and a non-Bearer authorization",
    headers: { "istio_sds_credentials_header-bin": "", authorization: "Basic dTpw" },
    verify: never,
    code: Code.Unauthenticated,
    message: /missing workload token/,
    reason: "missing",
    level: 40,
    log: "SDS call without a token",
  },
  {
    name: "a token the verifier rejects",
    headers: { "istio_sds_credentials_header-bin": binHeader(JWT) },
    verify: async () => {
      throw new AuthenticationError('"exp" claim timestamp check failed');
    },
    code: Code.Unauthenticated,
    message: /^\[unauthenticated\] invalid workload token: "exp" claim timestamp check failed$/,
    reason: "invalid",
    level: 40,
    log: "SDS call with an invalid token",
  },
  {
    name: "a verifier that cannot be reached",
    headers: { authorization: `Bearer ${JWT}` },
    verify: async () => {
      throw new VerifierUnavailableError("GET https://10.1.2.3/jwks.json: ECONNREFUSED", "the token issuer's keys cannot be fetched");
    },
    code: Code.Unavailable,
    message: /^\[unavailable\] token verifier unavailable, retry later: the token issuer's keys cannot be fetched$/,
    reason: "error",
    level: 40,
    log: "token verifier unavailable: the stream is answered UNAVAILABLE",
    hidden: ["10.1.2.3", "ECONNREFUSED"],
  },
  {
    name: "a verifier that breaks in any other way",
    headers: { "istio_sds_credentail_header-bin": binHeader(JWT) },
    verify: async () => {
      throw new TypeError("cannot read /etc/meshkey/jwks.json");
    },
    code: Code.Internal,
    message: /^\[internal\] token verification failed inside the node agent$/,
    reason: "error",
    level: 50,
    log: "token verification failed",
    hidden: ["/etc/meshkey"],
  },
];

for (const c of cases) {
  test(`${c.name}: ${Code[c.code]}, counted as "${c.reason}", one log line`, async () => {
    const { auth, lines, raw, registry } = setup(c.verify);
    const err = await auth.authenticate(new Headers(c.headers), "StreamSecrets").then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.instance(err, ConnectError);
    const ce = err as ConnectError;
    assert.is(ce.code, c.code);
    assert.match(ce.message, c.message);
    for (const h of c.hidden ?? []) assert.not.match(ce.message, h);
    assert.is(await metricValue(registry, "meshkey_sds_auth_failures_total", { reason: c.reason }), 1);
    assert.is(await metricValue(registry, "meshkey_sds_auth_failures_total"), 1, "no other reason counted");
    assert.is(auth.failures, 1);
    assert.equal(lines.map((l) => [l.level, l.msg, l.rpc]), [[c.level, c.log, "StreamSecrets"]]);
    assert.ok(raw.every((l) => !l.includes(JWT)), "the token itself is never logged");
  });
}

test("a refused token is logged with the claims it presents and what the verifier expects", async () => {
  const { auth, lines } = setup(async () => {
    throw new AuthenticationError("signature verification failed");
  });
  await auth.authenticate(new Headers({ authorization: `Bearer ${JWT}` }), "FetchSecrets").catch(() => {});
  const line = lines[0]!;
  assert.equal((line.presented as { sub: string }).sub, "system:serviceaccount:foo:httpbin");
  assert.equal(line.expected, { issuer: "https://issuer.test", audience: "istio-ca", keys: "file jwks.json" });
  assert.match(String(line.peer), /unix socket/);

  const { auth: other, lines: otherLines } = setup(async () => {
    throw new AuthenticationError("malformed");
  });
  await other.authenticate(new Headers({ authorization: "Bearer garbage" }), "StreamSecrets").catch(() => {});
  assert.is(otherLines[0]!.presented, "(not a JWT)");
});

test("a valid token: the caller and the token, nothing counted, nothing logged", async () => {
  const { auth, lines, registry, verified } = setup(async () => CALLER);
  const got = await auth.authenticate(new Headers({ "istio_sds_credentials_header-bin": binHeader(JWT) }), "DeltaSecrets");
  assert.equal(got, { caller: CALLER, token: JWT });
  assert.equal(verified, [JWT]);
  assert.is(auth.failures, 0);
  assert.is(await metricValue(registry, "meshkey_sds_auth_failures_total"), 0);
  assert.equal(lines, []);
});

test("every failure reason is exported at 0 before the first failure", async () => {
  const { registry } = setup(never);
  const text = await registry.metrics();
  for (const reason of ["missing", "invalid", "error"]) assert.match(text, `meshkey_sds_auth_failures_total{reason="${reason}"} 0`);
});

test.run();
