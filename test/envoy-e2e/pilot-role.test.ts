// The seeds' "secure control plane through SDS": a `meshkey bootstrap --role pilot`
// Envoy runs as the control plane's identity (istio-system/istiod, token from
// `meshkey token`), gets its certificate over SDS and terminates mTLS in front of
// meshkey's PLAINTEXT ADS port. Workload sidecars bootstrapped with `--xds-tls
// --xds-address <pilot's listener>` get their config through it and serve traffic.
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { envoySuite, freePort, startEnvoy, statsMatching, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, httpGet, meshkeyCli, waitForSidecarSynced, type MeshWorld, type Sidecar } from "../support/mesh-world.js";

const test = envoySuite("pilot-role");

const PILOT_IP = "127.32.0.200";
const ISTIOD = "spiffe://cluster.local/ns/istio-system/sa/istiod";

let world: MeshWorld;
let pilot: EnvoyProcess;
let pilotPort: number;
let sleep: Sidecar;
let httpbin: Sidecar;

test.before(async () => {
  world = await createMeshWorld({ subnet: 32 });
  const tokenPath = join(world.dir, "tokens", "istiod.istio-system");
  writeFileSync(tokenPath, meshkeyCli(["token", "--namespace", "istio-system", "--service-account", "istiod", "--state-dir", join(world.dir, "state")]).trim());
  pilotPort = await freePort();
  const adminPort = await freePort();
  const bootstrapPath = join(world.dir, "envoy-pilot.json");
  meshkeyCli([
    "bootstrap", "--role", "pilot",
    "--node-id", `sidecar~${PILOT_IP}~istiod-1.istio-system~istio-system.svc.cluster.local`,
    "--local-port", world.serve.xds!.split(":")[1]!,
    "--listen-address", PILOT_IP,
    "--listen-port", String(pilotPort),
    "--sds-socket", world.serve.sds!.replace(/^unix:/, ""),
    "--token-path", tokenPath,
    "--admin-port", String(adminPort),
    "-o", bootstrapPath,
  ]);
  pilot = await startEnvoy({ config: bootstrapPath, adminPort, name: "envoy pilot" });
  await pilot.waitForStat("sds.default.update_success", (v) => v >= 1);
  await pilot.waitForStat("sds.ROOTCA.update_success", (v) => v >= 1);
  await pilot.waitFor("the pilot's mTLS listener", async () => (await pilot.admin("/listeners")).body.includes(`${PILOT_IP}:${pilotPort}`));

  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  world.writeMesh([sleepW, httpbinW]);
  await world.startApp(httpbinW);
  const viaPilot = ["--xds-tls", "--xds-address", `${PILOT_IP}:${pilotPort}`];
  sleep = await world.startSidecar(sleepW, viaPilot);
  httpbin = await world.startSidecar(httpbinW, viaPilot);
  await waitForSidecarSynced(sleep.envoy);
  await waitForSidecarSynced(httpbin.envoy);
  await httpbin.envoy.waitFor("httpbin's inbound listener", async () =>
    (await httpbin.envoy.admin("/listeners")).body.includes(`${httpbinW.podIp}:${httpbinW.workloadPort}`),
  );
});

test.after(async () => {
  await pilot?.stop();
  await world?.close();
});

test("the pilot Envoy holds the control plane's certificate from SDS", async () => {
  const certs = await pilot.certs();
  const uris = certs.certificates.flatMap((c) => c.cert_chain.flatMap((d) => d.subject_alt_names.map((s) => s.uri)));
  assert.ok(uris.includes(ISTIOD), `pilot certificates: ${JSON.stringify(uris)}`);
});

test("sidecars get LDS and CDS over mTLS through the pilot, which proxies to the plaintext ADS port", async () => {
  for (const envoy of [sleep.envoy, httpbin.envoy]) {
    assert.ok((await envoy.stat("cluster_manager.cds.update_success")) >= 1, "cds.update_success");
    assert.ok((await envoy.stat("listener_manager.lds.update_success")) >= 1, "lds.update_success");
    assert.ok((await envoy.stat("cluster.xds-grpc.ssl.handshake")) > 0, "xds-grpc ssl.handshake");
    const bad = await statsMatching(envoy, /^cluster\.xds-grpc\.ssl\.(fail_verify_san|connection_error|fail_verify_error)$/);
    // On a failure, the connection lines of the sidecar's log say where it connected and why it failed.
    const why = () => envoy.log().split("\n").filter((l) => /xds-grpc|TLS_error|connecting to/.test(l)).slice(-20).join("\n");
    assert.equal(Object.values(bad).filter((v) => v !== 0), [], `xds-grpc TLS failures: ${JSON.stringify(bad)}\n${why()}`);
  }
  // The pilot terminated both TLS connections and passed them on with tcp_proxy.
  const handshakes = await pilot.stat(`listener.${PILOT_IP}_${pilotPort}.ssl.handshake`);
  assert.ok(handshakes >= 2, `pilot listener ssl.handshake = ${handshakes}`);
  assert.ok((await pilot.stat("tcp.pilot_discovery.downstream_cx_total")) >= 2, "pilot tcp_proxy connections");
  assert.ok((await pilot.stat("cluster.pilot-discovery-local.upstream_cx_total")) >= 2, "connections to the plaintext ADS port");
});

test("sleep.foo reaches httpbin.bar with HTTP 200 through both sidecars", async () => {
  const w = sleep.workload;
  const res = await sleep.envoy.waitFor("a 200 through the sidecars", async () => {
    const r = await httpGet(w.podIp, 8000, "httpbin.bar.svc.cluster.local:8000");
    return r.status === 200 ? r : undefined;
  });
  assert.is(JSON.parse(res.body).service, "httpbin.bar");
});

test("plaintext to the pilot's listener fails (it requires a client certificate)", async () => {
  const outcome = await httpGet(PILOT_IP, pilotPort, "istiod.istio-system.svc", "/", 3_000).then(
    (r) => `status ${r.status}`,
    (err: Error) => `error ${err.message}`,
  );
  assert.match(outcome, /^error /, `plaintext request got ${outcome}`);
});

test.run();
