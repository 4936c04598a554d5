// A token-verifier outage with real Envoy: meshkey verifies tokens against a JWKS URL served by
// this test. The issuer rotates its signing key while the JWKS URL is down, the workloads'
// tokens are refreshed under the new key, and the old tokens expire at the certificates'
// rotation time: the renewal needs the JWKS and cannot have it. Envoy keeps its certificate and
// its traffic (0 failed requests) through the outage — its SDS reconnects are answered
// UNAVAILABLE, not UNAUTHENTICATED — and rotates once the JWKS URL is back.
import { renameSync, writeFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import * as assert from "uvu/assert";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { envoySuite } from "../support/envoy.js";
import { createMeshWorld, startTrafficPair, httpGet, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";
import { startFlakyHttp, type FlakyHttpServer } from "../support/flaky-http.js";

const test = envoySuite("verifier outage (real Envoy)");

const ISSUER = "https://issuer.verifier-outage.test";
const CERT_TTL_SECONDS = 60; // rotation at ~30 s, expiry at 60 s
const FIRST_TOKEN_SECONDS = 12; // expired by rotation time
const LOOP_MAX_MS = 100_000;
const LOOP_MAX_REQUESTS = 4_000;
/** Pacing of the request loop (a rate, not a wait for anything). */
const REQUEST_INTERVAL_MS = 25;
/** Requests that must succeed while the outage is observed, before the JWKS URL comes back. */
const REQUESTS_DURING_OUTAGE = 100;

const k1 = await generateKeyPair("ES256");
const k2 = await generateKeyPair("ES256");
const jwk1 = { ...(await exportJWK(k1.publicKey)), kid: "k1", alg: "ES256" };
const jwk2 = { ...(await exportJWK(k2.publicKey)), kid: "k2", alg: "ES256" };
const published: unknown[] = [jwk1];

let jwks: FlakyHttpServer;
let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;

function mint(w: Workload, key: Parameters<SignJWT["sign"]>[0], kid: string, ttlSeconds: number): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ "kubernetes.io": { namespace: w.namespace, serviceaccount: { name: w.serviceAccount, uid: "u" } } })
    .setProtectedHeader({ alg: "ES256", kid })
    .setIssuer(ISSUER)
    .setSubject(`system:serviceaccount:${w.namespace}:${w.serviceAccount}`)
    .setAudience("istio-ca")
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
    .sign(key);
}

function writeToken(w: Workload, token: string): void {
  writeFileSync(`${w.tokenPath}.tmp`, token);
  renameSync(`${w.tokenPath}.tmp`, w.tokenPath); // as the kubelet does: never a half-written file
}

const spiffeIdOf = (s: Sidecar) => `spiffe://cluster.local/ns/${s.workload.namespace}/sa/${s.workload.serviceAccount}`;

async function workloadSerial(s: Sidecar): Promise<string | undefined> {
  const serials = new Set(
    (await s.envoy.certs()).certificates
      .flatMap((c) => c.cert_chain)
      .filter((c) => c.subject_alt_names.some((san) => san.uri === spiffeIdOf(s)))
      .map((c) => c.serial_number),
  );
  return serials.size === 1 ? [...serials][0] : undefined;
}

/** A counter from meshkey's /metrics (used only to know when the outage has been hit). */
async function meshkeyCounter(name: string, labels: string): Promise<number> {
  const res = await fetch(`http://${world.serve.admin}/metrics`, { signal: AbortSignal.timeout(2_000) });
  const line = (await res.text()).split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

test.before(async () => {
  jwks = await startFlakyHttp((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: published }));
  });
  world = await createMeshWorld({
    subnet: 85,
    serveArgs: ["--cert-ttl", `${CERT_TTL_SECONDS}s`, "--jwks", `${jwks.base}/jwks.json`, "--jwt-issuer", ISSUER],
  });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  for (const w of [sleepW, httpbinW]) writeToken(w, await mint(w, k1.privateKey, "k1", FIRST_TOKEN_SECONDS));
  world.writeMesh([sleepW, httpbinW]);
  ({ client: sleep, server: httpbin } = await startTrafficPair(world, sleepW, httpbinW));
});

test.after(async () => {
  await world?.close();
  await jwks?.close();
});

test("JWKS URL down at rotation (issuer key rotated meanwhile): Envoy keeps its certificate and traffic, and rotates once the URL is back", async () => {
  const sidecars = [sleep, httpbin];
  const pids = sidecars.map((s) => s.envoy.pid);
  const first = await Promise.all(sidecars.map((s) => s.envoy.waitFor("a workload certificate in /certs", () => workloadSerial(s))));
  const verifierErrorsBefore = await meshkeyCounter("meshkey_sds_auth_failures_total", 'reason="error"');
  const unauthenticatedBefore = await meshkeyCounter("meshkey_sds_auth_failures_total", 'reason="invalid"');

  // The outage: the JWKS URL goes down, the issuer starts signing with k2 (published only later).
  await jwks.down();
  for (const s of sidecars) writeToken(s.workload, await mint(s.workload, k2.privateKey, "k2", 600));

  const failures: string[] = [];
  let requests = 0;
  let outageSeenAt: number | undefined;
  let outageRequests = 0;
  let backAt: number | undefined;
  let rotatedAt: number | undefined;
  const servedDuringOutage = sidecars.map(() => new Set<string>());
  const started = Date.now();
  while (rotatedAt === undefined && requests < LOOP_MAX_REQUESTS && Date.now() - started < LOOP_MAX_MS) {
    requests++;
    const paced = delay(REQUEST_INTERVAL_MS);
    try {
      const r = await httpGet(sleep.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", `/r/${requests}`, 5_000);
      if (r.status !== 200) failures.push(`#${requests}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    } catch (err) {
      failures.push(`#${requests}: ${(err as Error).message}`);
    }
    if (outageSeenAt !== undefined && backAt === undefined) outageRequests++;
    if (requests % 10 === 0) {
      const serials = await Promise.all(sidecars.map((s) => workloadSerial(s)));
      if (outageSeenAt === undefined) {
        // Both identities reached rotation with expired tokens and their reconnects met the outage.
        const errors = (await meshkeyCounter("meshkey_sds_auth_failures_total", 'reason="error"')) - verifierErrorsBefore;
        if (errors >= 2) outageSeenAt = Date.now();
      } else if (backAt === undefined) {
        serials.forEach((v, i) => v && servedDuringOutage[i]!.add(v));
        if (outageRequests >= REQUESTS_DURING_OUTAGE) {
          published.push(jwk2);
          await jwks.up();
          backAt = Date.now();
        }
      } else if (serials.every((v, i) => v !== undefined && v !== first[i])) rotatedAt = Date.now();
    }
    await paced;
  }
  const summary = `${requests} requests in ${Date.now() - started} ms; outage seen after ${outageSeenAt && outageSeenAt - started} ms, ` +
    `JWKS back after ${backAt && backAt - started} ms, rotated ${rotatedAt && backAt && rotatedAt - backAt} ms after that`;
  console.log(`verifier outage: ${summary}; serials ${first.join(",")} → ${(await Promise.all(sidecars.map(workloadSerial))).join(",")}`);
  assert.ok(outageSeenAt !== undefined, `the SDS reconnects never met the outage (${summary})`);
  assert.equal(failures, [], `failed requests (${summary})`);
  for (const [i, s] of sidecars.entries()) {
    assert.equal([...servedDuringOutage[i]!], [first[i]], `${s.workload.name}: Envoy held its first certificate during the outage`);
    assert.is(s.envoy.pid, pids[i], `${s.workload.name}: Envoy restarted`);
    assert.is(await s.envoy.stat("sds.default.update_rejected"), 0);
  }
  assert.ok(rotatedAt !== undefined, `no rotation after the JWKS URL came back (${summary})`);
  assert.is(
    await meshkeyCounter("meshkey_sds_auth_failures_total", 'reason="invalid"'),
    unauthenticatedBefore,
    "no reconnect during the outage was answered as a bad token",
  );
});

test.run();
