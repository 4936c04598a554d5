// Every SDS call is authenticated from its token; a bad one is refused with
// UNAUTHENTICATED and the server keeps serving everyone else.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as grpc from "@grpc/grpc-js";
import { metricValue, secretsOf, sotwRequest, startAgent, type AgentEnv, type Credential } from "./sds-harness.js";

let env: AgentEnv;
test.before(async () => {
  env = await startAgent();
});
test.after(async () => {
  await env.close();
});

const attacks: Array<[string, () => Promise<Credential>, RegExp]> = [
  ["no token at all", async () => ({ kind: "none" }), /missing workload token/],
  ["a token signed by another key", async () => ({ kind: "header", token: await env.signer.mintWithOtherKey("foo", "httpbin") }), /invalid workload token/],
  ["an expired token", async () => ({ kind: "header", token: await env.signer.mint("foo", "httpbin", { expOffsetSeconds: -30 }) }), /invalid workload token/],
  ["a token for another audience", async () => ({ kind: "header", token: await env.signer.mint("foo", "httpbin", { audience: "kubernetes" }) }), /invalid workload token/],
  ["an unsigned token (alg none)", async () => ({ kind: "header", token: env.signer.unsigned("foo", "httpbin") }), /invalid workload token/],
  ["garbage", async () => ({ kind: "header", token: "not.a.jwt" }), /invalid workload token/],
  ["garbage as a Bearer token", async () => ({ kind: "bearer", token: "xyz" }), /invalid workload token/],
];

for (const [name, cred, message] of attacks) {
  test(`StreamSecrets refuses ${name} with UNAUTHENTICATED`, async () => {
    const s = env.client.stream(await cred());
    s.send(sotwRequest(["default"]));
    const st = await s.status;
    assert.is(st.code, grpc.status.UNAUTHENTICATED);
    assert.match(st.details, message);
    assert.is(s.received.length, 0, "no secret before the refusal");
  });
}

test("FetchSecrets and DeltaSecrets refuse a bad token too", async () => {
  const bad: Credential = { kind: "header", token: await env.signer.mintWithOtherKey("foo", "httpbin") };
  const err = await env.client.fetch(bad, ["default"]).then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  assert.is(err?.code, grpc.status.UNAUTHENTICATED);
  const d = env.client.delta(bad);
  const st = await d.status;
  assert.is(st.code, grpc.status.UNAUTHENTICATED);
});

const spellings: Array<[string, (t: string) => Credential]> = [
  ["istio_sds_credentials_header-bin", (token) => ({ kind: "header", token })],
  ["istio_sds_credentail_header-bin (Istio 1.1 spelling)", (token) => ({ kind: "header", token, header: "istio_sds_credentail_header-bin" })],
  ["authorization: Bearer", (token) => ({ kind: "bearer", token })],
];
for (const [name, cred] of spellings) {
  test(`a valid token in ${name} gets the workload certificate`, async () => {
    const token = await env.signer.mint("bar", "sleep");
    const s = env.client.stream(cred(token));
    s.send(sotwRequest(["default"]));
    const r = await s.next();
    assert.equal(secretsOf(r).map((x) => x.name), ["default"]);
    s.close();
  });
}

test("after refusals the server still serves valid callers, and counts the failures", async () => {
  const failures = await metricValue(env.registry, "meshkey_sds_auth_failures_total");
  assert.ok(failures >= attacks.length, `auth failures counted (${failures})`);
  const token = await env.signer.mint("foo", "httpbin");
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["ROOTCA"]));
  assert.is(secretsOf(await s.next())[0]!.name, "ROOTCA");
  s.close();
});

test.run();
