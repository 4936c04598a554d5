// Certificate rotation with real Envoy: meshkey serves 20-second certificates (renewed
// at half their life), pushes each renewal on the open SDS streams, and both sidecars
// take the new certificate without a restart while requests keep flowing through them
// (client sidecar outbound → mTLS → server sidecar inbound → app) with no failure.
import { renameSync, writeFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import * as assert from "uvu/assert";
import { envoySuite, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, startTrafficPair, httpGet, waitForSidecarSynced, type MeshWorld, type Sidecar } from "../support/mesh-world.js";

const test = envoySuite("rotation (real Envoy)");

const CERT_TTL_SECONDS = 20;
const LOOP_MAX_MS = 60_000;
const LOOP_MAX_REQUESTS = 3_000;
/** Pacing of the request loop (a rate, not a wait for anything): at most one request per 20 ms. */
const REQUEST_INTERVAL_MS = 20;

let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;

const spiffeIdOf = (s: Sidecar) => `spiffe://cluster.local/ns/${s.workload.namespace}/sa/${s.workload.serviceAccount}`;

/** The serial of the workload certificate Envoy holds now (one per identity, every TLS context the same). */
async function workloadSerial(s: Sidecar): Promise<string | undefined> {
  const certs = await s.envoy.certs();
  const serials = new Set(
    certs.certificates
      .flatMap((c) => c.cert_chain)
      .filter((c) => c.subject_alt_names.some((san) => san.uri === spiffeIdOf(s)))
      .map((c) => c.serial_number),
  );
  // While Envoy swaps the secret into each TLS context, contexts can briefly disagree.
  return serials.size === 1 ? [...serials][0] : undefined;
}

const sum = async (envoy: EnvoyProcess, suffix: string) =>
  [...(await envoy.stats())].filter(([k]) => k.endsWith(suffix)).reduce((a, [, v]) => a + v, 0);

test.before(async () => {
  world = await createMeshWorld({ subnet: 52, serveArgs: ["--cert-ttl", `${CERT_TTL_SECONDS}s`] });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  world.writeMesh([sleepW, httpbinW]);
  ({ client: sleep, server: httpbin } = await startTrafficPair(world, sleepW, httpbinW));
});

test.after(async () => {
  await world?.close();
});

test("both sidecars rotate under a request loop: 0 failures, new serials in /certs, same Envoy PIDs", async () => {
  const sidecars = [sleep, httpbin];
  const pids = sidecars.map((s) => s.envoy.pid);
  const firstSerial = await Promise.all(sidecars.map((s) => s.envoy.waitFor("a workload certificate in /certs", () => workloadSerial(s))));
  const firstUpdates = await Promise.all(sidecars.map((s) => s.envoy.stat("sds.default.update_success")));
  const handshakesBefore = await sum(httpbin.envoy, ".ssl.handshake");

  const seen = sidecars.map((_, i) => new Set([firstSerial[i]!]));
  const failures: string[] = [];
  let requests = 0;
  const started = Date.now();
  // Until each sidecar has held at least two certificates after the first (so that one full
  // rotation happened while traffic flowed before and after it), bounded in count and time.
  while (seen.some((s) => s.size < 3) && requests < LOOP_MAX_REQUESTS && Date.now() - started < LOOP_MAX_MS) {
    requests++;
    const paced = delay(REQUEST_INTERVAL_MS);
    try {
      const r = await httpGet(sleep.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", `/r/${requests}`, 5_000);
      if (r.status !== 200) failures.push(`#${requests}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
      else if ((JSON.parse(r.body) as { service: string }).service !== "httpbin.bar") failures.push(`#${requests}: wrong service ${r.body.slice(0, 200)}`);
    } catch (err) {
      failures.push(`#${requests}: ${(err as Error).message}`);
    }
    if (requests % 10 === 0) {
      for (const [i, s] of sidecars.entries()) {
        const serial = await workloadSerial(s);
        if (serial !== undefined) seen[i]!.add(serial);
      }
    }
    await paced;
  }
  const elapsed = Date.now() - started;
  const summary = `${requests} requests in ${elapsed} ms; serials sleep=${[...seen[0]!].join(",")} httpbin=${[...seen[1]!].join(",")}`;
  assert.equal(failures, [], `failures (${summary})`);
  for (const [i, s] of sidecars.entries()) {
    assert.ok(seen[i]!.size >= 3, `${s.workload.name}: rotated fewer than twice (${summary})`);
    assert.is(s.envoy.pid, pids[i], `${s.workload.name}: Envoy PID changed`);
    assert.not.ok(s.envoy.exited(), `${s.workload.name}: Envoy exited`);
    const updates = await s.envoy.stat("sds.default.update_success");
    assert.ok(updates >= firstUpdates[i]! + 2, `${s.workload.name}: sds.default.update_success ${firstUpdates[i]} → ${updates}`);
    assert.is(await s.envoy.stat("sds.default.update_rejected"), 0, `${s.workload.name}: a pushed certificate was rejected`);
    // The root did not change, so its stream stays quiet apart from the first response.
    assert.is(await s.envoy.stat("sds.ROOTCA.update_rejected"), 0, `${s.workload.name}: sds.ROOTCA.update_rejected`);
  }
  // The traffic went through mTLS the whole time.
  assert.ok((await sum(httpbin.envoy, ".ssl.handshake")) >= Math.max(1, handshakesBefore), "server sidecar handshakes");
});

test("after rotation, a new mTLS connection verifies with the rotated certificates on both sides", async () => {
  // A new client sidecar (same identity as sleep) handshakes with httpbin's current certificate.
  const before = await sum(httpbin.envoy, ".ssl.handshake");
  const fresh = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const extra = await world.startSidecar(fresh);
  await waitForSidecarSynced(extra.envoy);
  const r = await extra.envoy.waitFor("a 200 from a new client sidecar", async () => {
    const res = await httpGet(fresh.podIp, 8000, "httpbin.bar.svc.cluster.local:8000");
    return res.status === 200 ? res : undefined;
  });
  assert.is(r.status, 200);
  assert.ok((await sum(httpbin.envoy, ".ssl.handshake")) > before, "no new handshake on the server sidecar");
  assert.is(await sum(httpbin.envoy, ".ssl.fail_verify_error"), 0, "server sidecar: ssl.fail_verify_error");
  assert.is(await sum(extra.envoy, ".ssl.fail_verify_error"), 0, "client sidecar: ssl.fail_verify_error");
});

test("a token that expired by rotation time: Envoy keeps its certificate, is sent back with 16 and no secret, and resumes once its file is refreshed", async () => {
  const w = await world.workload({ name: "expiring", namespace: "foo" });
  // Accepted for the first certificate (the verifier's leeway is 60 s), expired when it is due.
  writeFileSync(w.tokenPath, world.token(w.namespace, w.serviceAccount, "2s"));
  const s = await world.startSidecar(w);
  await waitForSidecarSynced(s.envoy);
  const pid = s.envoy.pid;
  const serial0 = await s.envoy.waitFor("a workload certificate in /certs", () => workloadSerial(s));
  const updates0 = await s.envoy.stat("sds.default.update_success");
  // At rotation meshkey ends the stream; Envoy reconnects with the same (expired) file and is sent back again.
  await s.envoy.waitForStat("sds.default.grpc.sdsstat.streams_closed_16", (v) => v >= 2, 30_000);
  assert.match(s.envoy.log(), /StreamSecrets gRPC config stream to \S+ closed: 16, workload token expired/);
  // No secret on the streams sent back (a response would reset Envoy's retry backoff: a reconnect storm).
  assert.is(await s.envoy.stat("sds.default.update_success"), updates0, "sds.default.update_success grew on refused streams");
  assert.is(await workloadSerial(s), serial0, "Envoy kept its still-valid certificate");
  // The kubelet refreshes the token file: the next stream carries it and the renewal goes through.
  writeFileSync(`${w.tokenPath}.new`, world.token(w.namespace, w.serviceAccount, "1h"));
  renameSync(`${w.tokenPath}.new`, w.tokenPath);
  const serial1 = await s.envoy.waitFor("a renewed certificate in /certs", async () => {
    const serial = await workloadSerial(s);
    return serial !== undefined && serial !== serial0 ? serial : undefined;
  }, 60_000);
  assert.is.not(serial1, serial0);
  assert.is(s.envoy.pid, pid, "Envoy PID changed");
  assert.ok((await s.envoy.stat("sds.default.update_success")) > updates0);
  assert.is(await s.envoy.stat("sds.default.update_rejected"), 0);
});

test.run();
