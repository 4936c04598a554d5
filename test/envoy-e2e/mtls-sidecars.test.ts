// Two real Envoy sidecars (different identities and namespaces) on distinct pod IPs,
// bootstrapped by `meshkey bootstrap` and fed by ADS + SDS: traffic goes app → its
// sidecar's outbound listener → mTLS → the peer's inbound listener → app.
import * as assert from "uvu/assert";
import { envoySuite, statsMatching, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, httpGet, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("mtls-sidecars");

let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;
let impostor: Workload;

const sum = async (envoy: EnvoyProcess, suffix: string) =>
  [...(await envoy.stats())].filter(([k]) => k.endsWith(suffix)).reduce((a, [, v]) => a + v, 0);

test.before(async () => {
  world = await createMeshWorld({ subnet: 20 });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  // A service whose endpoint is httpbin's pod but whose identity is another one:
  // callers must refuse httpbin's certificate for it.
  impostor = { ...httpbinW, name: "impostor", serviceAccount: "impostor", nodeId: "", tokenPath: "" };
  world.writeMesh([sleepW, httpbinW, impostor]);
  await world.startApp(httpbinW);
  sleep = await world.startSidecar(sleepW);
  httpbin = await world.startSidecar(httpbinW);
  await waitForSidecarSynced(sleep.envoy);
  await waitForSidecarSynced(httpbin.envoy);
  // The callee's inbound listener is up once its pod-IP listener is active.
  await httpbin.envoy.waitFor("httpbin's inbound listener", async () => (await httpbin.envoy.admin("/listeners")).body.includes(`${httpbinW.podIp}:${httpbinW.workloadPort}`));
});

test.after(async () => {
  await world?.close();
});

test("sleep.foo reaches httpbin.bar with HTTP 200 through both sidecars", async () => {
  const w = sleep.workload;
  const res = await sleep.envoy.waitFor("a 200 through the sidecars", async () => {
    const r = await httpGet(w.podIp, 8000, "httpbin.bar.svc.cluster.local:8000");
    return r.status === 200 ? r : undefined;
  });
  assert.is(JSON.parse(res.body).service, "httpbin.bar");
});

test("the mTLS handshake happened on both sides, with no SAN, TLS, config or deprecation failure", async () => {
  await httpGet(sleep.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000");
  assert.ok((await sum(sleep.envoy, ".ssl.handshake")) > 0, "client sidecar: ssl.handshake");
  assert.ok((await sum(httpbin.envoy, ".ssl.handshake")) > 0, "server sidecar: ssl.handshake");
  for (const envoy of [sleep.envoy, httpbin.envoy]) {
    // The impostor cluster (next test) is the only place a SAN failure is expected.
    const bad = await statsMatching(envoy, /(ssl\.fail_verify_san|ssl\.connection_error|cds\.update_rejected|lds\.update_rejected|runtime\.deprecated_feature_use)$/);
    const nonZero = Object.entries(bad).filter(([k, v]) => v !== 0 && !k.includes("impostor"));
    assert.equal(nonZero, [], `counters that must stay 0: ${JSON.stringify(nonZero)}`);
  }
});

test("every short Host name form routes: <svc>.<ns>.svc, <svc>.<ns>, with and without the port", async () => {
  for (const host of ["httpbin.bar.svc", "httpbin.bar", "httpbin.bar:8000", "httpbin.bar.svc.cluster.local"]) {
    const r = await httpGet(sleep.workload.podIp, 8000, host);
    assert.is(r.status, 200, `Host ${host}`);
  }
});

test("plaintext to the inbound listener fails (STRICT mTLS requires a client certificate)", async () => {
  const w = httpbin.workload;
  const outcome = await httpGet(w.podIp, w.workloadPort, "httpbin.bar", "/", 3_000).then(
    (r) => `status ${r.status}`,
    (err: Error) => `error ${err.message}`,
  );
  assert.match(outcome, /^error /, `plaintext request got ${outcome}`);
});

test("a cluster whose SAN names another identity fails the handshake (ssl.fail_verify_san)", async () => {
  const r = await httpGet(sleep.workload.podIp, 8000, `impostor.bar.svc.cluster.local:8000`);
  assert.is(r.status, 503);
  const failed = await sleep.envoy.stat(`cluster.outbound|8000||impostor.bar.svc.cluster.local.ssl.fail_verify_san`);
  assert.ok(failed >= 1, `fail_verify_san = ${failed}`);
  assert.ok(impostor.name === "impostor");
});

test("the app in foo reaches httpbin in bar at its own pod IP, as the contract's curl line does", async () => {
  const r = await httpGet(sleep.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", "/headers");
  assert.is(r.status, 200);
  const seen = JSON.parse(r.body) as { path: string; headers: Record<string, string> };
  assert.is(seen.path, "/headers");
  // The server sidecar forwarded the request: Envoy adds x-forwarded-proto and a request id.
  assert.ok(seen.headers["x-request-id"], "x-request-id set by Envoy");
});

test.run();
