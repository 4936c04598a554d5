// withVerifiedTokenMemo: a token is verified once per issuance (the node agent's check and its
// in-process CA's check share one), a remembered verification ends at the TTL or the token's
// expiry (whichever is first), failures are never remembered, concurrent checks share one call,
// and the CA server over TLS still verifies every token it receives.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import pino from "pino";
import {
  AuthenticationError,
  VerifierUnavailableError,
  createKeyAndCsr,
  withVerifiedTokenMemo,
  type AuthenticatedCaller,
  type TokenAuthenticator,
  type VerifiedTokenMemoOptions,
} from "../../src/ca/index.js";
import { createIstioCaProvider } from "../../src/sds/index.js";
import { resolveServeConfig } from "../../src/cli/serve-config.js";
import { startMeshkey } from "../../src/cli/meshkey-process.js";
import { createTokenSigner, secretsOf, sotwRequest, startAgent, SdsTestClient, tlsOf } from "../sds/sds-harness.js";
import { startFlakyHttp, tokenReviewHandler } from "../support/flaky-http.js";
import { tempDir } from "./helpers.js";

const T0 = Date.parse("2025-01-01T00:00:00Z");

/** A verifier that counts its calls; `verdict` says what a token gets (a caller, or an error thrown). */
interface CountingVerifier extends TokenAuthenticator {
  calls: number;
  verdict: (token: string) => AuthenticatedCaller | Error;
  /** When set, each verification waits for this promise before answering. */
  gate: Promise<void> | undefined;
}

function countingVerifier(verdict: CountingVerifier["verdict"] = () => caller()): CountingVerifier {
  const v: CountingVerifier = {
    calls: 0,
    verdict,
    gate: undefined,
    async authenticate(token) {
      v.calls++;
      if (v.gate) await v.gate;
      const r = v.verdict(token);
      if (r instanceof Error) throw r;
      return r;
    },
  };
  return v;
}

function caller(expiresAt?: number): AuthenticatedCaller {
  return { namespace: "foo", serviceAccount: "httpbin", subject: "system:serviceaccount:foo:httpbin", expiresAt: expiresAt === undefined ? undefined : new Date(expiresAt) };
}

/** An unsigned JWT-shaped token with `exp` (the memo only reads it to shorten its memory). */
function jwtShaped(expMs: number, salt = "x"): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "ES256" })}.${b64({ exp: Math.floor(expMs / 1000), jti: salt })}.c2ln`;
}

interface Step {
  /** Milliseconds after T0 at which the token is presented. */
  at: number;
  token?: string;
  /** Verifier calls so far, after this step. */
  calls: number;
  /** The step's outcome: accepted, or refused with this error class. */
  refused?: typeof AuthenticationError | typeof VerifierUnavailableError;
}

interface MemoCase {
  name: string;
  options?: Omit<VerifiedTokenMemoOptions, "now">;
  verdict?: CountingVerifier["verdict"];
  steps: Step[];
}

let unavailableCalls = 0;

const cases: MemoCase[] = [
  {
    name: "a verified token is accepted from memory for ttlMs (10 s by default), then verified again",
    steps: [
      { at: 0, calls: 1 },
      { at: 5, calls: 1 },
      { at: 9_999, calls: 1 },
      { at: 10_000, calls: 2 },
      { at: 10_001, calls: 2 },
    ],
  },
  {
    name: "a shorter ttlMs is honoured",
    options: { ttlMs: 1_000 },
    steps: [
      { at: 0, calls: 1 },
      { at: 999, calls: 1 },
      { at: 1_000, calls: 2 },
    ],
  },
  {
    name: "never past the verified caller's expiresAt, without leeway",
    verdict: () => caller(T0 + 3_000),
    steps: [
      { at: 0, token: "tok", calls: 1 },
      { at: 2_999, token: "tok", calls: 1 },
      { at: 3_000, token: "tok", calls: 2 },
    ],
  },
  {
    name: "never past the token's own exp claim, when the verifier names no expiry (TokenReview)",
    steps: [
      { at: 0, token: jwtShaped(T0 + 2_000), calls: 1 },
      { at: 1_999, token: jwtShaped(T0 + 2_000), calls: 1 },
      { at: 2_000, token: jwtShaped(T0 + 2_000), calls: 2 },
    ],
  },
  {
    name: "a token verified after its expiry (within the verifier's leeway) is not remembered at all",
    verdict: () => caller(T0 - 1_000),
    steps: [
      { at: 0, calls: 1 },
      { at: 1, calls: 2 },
    ],
  },
  {
    name: "a refused token (AuthenticationError) is never remembered: each presentation asks the verifier",
    verdict: () => new AuthenticationError("token rejected: signature verification failed"),
    steps: [
      { at: 0, calls: 1, refused: AuthenticationError },
      { at: 1, calls: 2, refused: AuthenticationError },
      { at: 2, calls: 3, refused: AuthenticationError },
    ],
  },
  {
    name: "a verifier outage (VerifierUnavailableError) is never remembered, and the first success after it is",
    verdict: () => (++unavailableCalls <= 2 ? new VerifierUnavailableError("JWKS down", "JWKS unreachable") : caller()),
    steps: [
      { at: 0, calls: 1, refused: VerifierUnavailableError },
      { at: 1, calls: 2, refused: VerifierUnavailableError },
      { at: 2, calls: 3 },
      { at: 3, calls: 3 },
    ],
  },
  {
    name: "a token that differs by one character (an altered signature) is verified on its own",
    verdict: (t) => (t.endsWith("B") ? new AuthenticationError("signature verification failed") : caller()),
    steps: [
      { at: 0, token: "header.payload.A", calls: 1 },
      { at: 1, token: "header.payload.B", calls: 2, refused: AuthenticationError },
      { at: 2, token: "header.payload.A", calls: 2 },
    ],
  },
  {
    name: "at most maxEntries tokens are remembered; the oldest is forgotten first",
    options: { maxEntries: 2 },
    steps: [
      { at: 0, token: "a", calls: 1 },
      { at: 1, token: "b", calls: 2 },
      { at: 2, token: "c", calls: 3 },
      { at: 3, token: "b", calls: 3 },
      { at: 4, token: "c", calls: 3 },
      { at: 5, token: "a", calls: 4 },
    ],
  },
  {
    name: "ttlMs 0: every presentation is verified",
    options: { ttlMs: 0 },
    steps: [
      { at: 0, calls: 1 },
      { at: 0, calls: 2 },
    ],
  },
];

for (const c of cases) {
  test(c.name, async () => {
    let t = T0;
    const verifier = countingVerifier(c.verdict);
    const memo = withVerifiedTokenMemo(verifier, { ...c.options, now: () => t });
    for (const [i, step] of c.steps.entries()) {
      t = T0 + step.at;
      const where = `step ${i} (at +${step.at} ms)`;
      try {
        const who = await memo.authenticate(step.token ?? "the-token");
        assert.is(step.refused, undefined, `${where}: accepted`);
        assert.is(who.serviceAccount, "httpbin");
      } catch (err) {
        if (!step.refused) throw err;
        assert.instance(err, step.refused, where);
      }
      assert.is(verifier.calls, step.calls, `${where}: verifier calls`);
    }
  });
}

test("concurrent presentations of one token share one verification; a shared failure is not remembered", async () => {
  const verifier = countingVerifier();
  const memo = withVerifiedTokenMemo(verifier);
  let open!: () => void;
  verifier.gate = new Promise((r) => (open = r));
  const five = Array.from({ length: 5 }, () => memo.authenticate("t"));
  await Promise.resolve();
  assert.is(verifier.calls, 1);
  open();
  assert.equal((await Promise.all(five)).map((c) => c.serviceAccount), Array(5).fill("httpbin"));
  assert.is(verifier.calls, 1);

  verifier.verdict = () => new VerifierUnavailableError("TokenReview down", "the TokenReview API server is unreachable");
  verifier.gate = new Promise((r) => (open = r));
  const failing = Array.from({ length: 3 }, () => memo.authenticate("u").then(() => "accepted", (e: Error) => e.name));
  open();
  assert.equal(await Promise.all(failing), Array(3).fill("VerifierUnavailableError"));
  assert.is(verifier.calls, 2);
  verifier.gate = undefined;
  await memo.authenticate("u").catch(() => undefined);
  assert.is(verifier.calls, 3, "the failure was not remembered");
});

test("each presentation gets its own caller object (changing one changes no other)", async () => {
  const memo = withVerifiedTokenMemo(countingVerifier(() => caller(Date.now() + 60_000)));
  const a = await memo.authenticate("t");
  a.namespace = "kube-system";
  a.expiresAt!.setTime(0);
  const b = await memo.authenticate("t");
  assert.is(b.namespace, "foo");
  assert.ok(b.expiresAt!.getTime() > Date.now());
});

test("ready, warmUp and expects are the verifier's", async () => {
  let warmed = 0;
  const inner: TokenAuthenticator = {
    authenticate: async () => caller(),
    ready: () => warmed > 0,
    warmUp: async () => void warmed++,
    expects: () => ({ audience: "istio-ca", keys: "TokenReview https://api" }),
  };
  const memo = withVerifiedTokenMemo(inner);
  assert.is(memo.ready!(), false);
  await memo.warmUp!();
  assert.is(memo.ready!(), true);
  assert.equal(memo.expects!(), { audience: "istio-ca", keys: "TokenReview https://api" });
  const bare = withVerifiedTokenMemo({ authenticate: async () => caller() });
  assert.is(bare.ready, undefined, "a verifier without readiness stays without (always ready)");
});

// ------------------------------------------------ one verification per issuance

test("SDS server and builtin CA provider sharing one memo verify the token once for a first certificate", async () => {
  const signer = await createTokenSigner();
  const verifier = countingVerifier();
  const raw = signer.authenticator;
  verifier.authenticate = async (token) => {
    verifier.calls++;
    return raw.authenticate(token);
  };
  const env = await startAgent({ signer: { ...signer, authenticator: withVerifiedTokenMemo(verifier) } });
  try {
    const token = await signer.mint("foo", "httpbin");
    const s = env.client.stream({ kind: "header", token });
    s.send(sotwRequest(["default"]));
    const [secret] = secretsOf(await s.next());
    assert.match(tlsOf(secret!).chainPem, /BEGIN CERTIFICATE/);
    assert.is(env.provider.calls, 1, "one CSR signed");
    assert.is(verifier.calls, 1, "one verification for the stream and the CSR");
    s.close();
  } finally {
    await env.close();
  }
});

test("meshkey serve with TokenReview: one API-server call for a first certificate over SDS; the CA server asks for each of its requests", async () => {
  const api = await startFlakyHttp(tokenReviewHandler);
  const dir = tempDir("meshkey-memo-");
  const m = await startMeshkey(
    resolveServeConfig([
      "--state-dir", join(dir.path, "state"),
      "--sds-socket", join(dir.path, "uds_path"),
      "--ca-listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
      "--no-xds",
      "--token-review", api.base,
    ]),
    pino({ level: "silent" }),
  );
  const client = new SdsTestClient(join(dir.path, "uds_path"));
  const remote = createIstioCaProvider({ address: m.addresses.ca!, rootCertPem: m.rootCertPem! });
  try {
    assert.is(api.requests, 0, "nothing verified at start");
    const res = await client.fetch({ kind: "header", token: "foo/httpbin" }, ["default"]);
    assert.match(tlsOf(secretsOf(res)[0]!).chainPem, /BEGIN CERTIFICATE/);
    assert.is(api.requests, 1, "the SDS check and the in-process CA's check: one TokenReview");

    const { csrPem } = await createKeyAndCsr("ec-p256");
    await remote.sign(csrPem, "foo/sleep");
    await remote.sign(csrPem, "foo/sleep");
    assert.is(api.requests, 3, "the CA server over TLS verifies every token it receives");
  } finally {
    remote.close();
    client.close();
    await m.close();
    await api.close();
    dir.remove();
  }
});

test.run();
