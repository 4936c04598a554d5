// The CA unreachable at rotation, with real Envoy, in the README's split deployment: a CA
// process (`serve --no-sds`: the CA and ADS) with its own state dir, and a node agent
// (`serve --no-ca --no-xds --ca-provider istio`) whose socket the sidecars get SDS from.
// The CA process is SIGKILLed (by PID) under traffic. The agent keeps serving the
// certificates Envoy has, retries with backoff and rotates once the CA is back on the same
// state dir and port, before the certificates expire, with no failed request. When it never
// comes back, the agent says so ahead of time (a warn log naming the CA, the per-identity
// expiry gauge, the renewal-failure counter) and, once the certificates have expired, new
// mTLS handshakes fail in Envoy.
import * as assert from "uvu/assert";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { DEV_ISSUER } from "../../src/ca/index.js";
import { envoySuite, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, httpGet, waitForSidecarSynced, type MeshWorld, type Sidecar } from "../support/mesh-world.js";
import { startServeProcess, type ServeProcess } from "../support/serve-process.js";

const test = envoySuite("CA outage in a split deployment (real Envoy)");

const CERT_TTL_SECONDS = 40; // rotation at ~20 s, expiry at 40 s
const LOOP_MAX_MS = 90_000;
const LOOP_MAX_REQUESTS = 4_000;
/** Pacing of the request loop (a rate, not a wait for anything). */
const REQUEST_INTERVAL_MS = 25;
/** Requests that must succeed while the CA is known to be down, before it is started again. */
const REQUESTS_DURING_OUTAGE = 100;

let world: MeshWorld;
let agent: ServeProcess;
let sleep: Sidecar;
let httpbin: Sidecar;
/** Idle until the certificates have expired: its first request then needs a new handshake. */
let prober: Sidecar;

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

/** notAfter (ms) of the workload certificate Envoy holds, from /certs. */
async function workloadNotAfter(s: Sidecar): Promise<number> {
  const leaf = (await s.envoy.certs()).certificates
    .flatMap((c) => c.cert_chain)
    .find((c) => c.subject_alt_names.some((san) => san.uri === spiffeIdOf(s)));
  if (!leaf) throw new Error(`${s.workload.name}: no workload certificate in /certs`);
  return Date.parse(leaf.expiration_time);
}

/** The agent's /metrics as name{labels} → value. */
async function agentMetrics(): Promise<Map<string, number>> {
  const res = await fetch(`http://${agent.admin}/metrics`, { signal: AbortSignal.timeout(2_000) });
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line.startsWith("#") || line === "") continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
const renewalFailures = async (reason: string) => (await agentMetrics()).get(`meshkey_sds_renewal_failures_total{reason="${reason}"}`) ?? 0;

const sum = async (envoy: EnvoyProcess, re: RegExp) => [...(await envoy.stats())].filter(([k]) => re.test(k)).reduce((a, [, v]) => a + v, 0);
const SSL_FAILURES = /\.ssl\.(connection_error|fail_verify_error|fail_verify_san)$/;

test.before(async () => {
  // The CA process: CA + ADS, no SDS; it pushes SDS config pointing at world.sdsSocketPath.
  world = await createMeshWorld({ subnet: 95, serveArgs: ["--no-sds", "--cert-ttl", `${CERT_TTL_SECONDS}s`] });
  const caState = join(world.dir, "state");
  agent = await startServeProcess([
    "--state-dir", join(world.dir, "agent-state"),
    "--sds-socket", world.sdsSocketPath,
    "--admin-listen", "127.0.0.1:0",
    "--no-ca", "--no-xds",
    "--ca-provider", "istio",
    "--ca-address", world.serve.ca!,
    "--ca-root-cert", join(caState, "root-cert.pem"),
    "--jwks", join(caState, "jwks.json"),
    "--jwt-issuer", DEV_ISSUER,
    "--cert-ttl", `${CERT_TTL_SECONDS}s`,
  ]);
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  const proberW = await world.workload({ name: "prober", namespace: "foo", port: 81 });
  world.writeMesh([sleepW, httpbinW, proberW]);
  await world.startApp(httpbinW);
  sleep = await world.startSidecar(sleepW);
  httpbin = await world.startSidecar(httpbinW);
  prober = await world.startSidecar(proberW);
  for (const s of [sleep, httpbin, prober]) await waitForSidecarSynced(s.envoy);
  await sleep.envoy.waitFor("a 200 through both sidecars", async () => {
    const r = await httpGet(sleepW.podIp, 8000, "httpbin.bar.svc.cluster.local:8000");
    return r.status === 200;
  });
});

test.after(async () => {
  await agent?.stop();
  await world?.close();
});

test("CA process SIGKILLed at rotation: Envoy keeps its certificate and traffic, and rotates before expiry once the CA is back", async () => {
  const sidecars = [sleep, httpbin];
  const pids = sidecars.map((s) => s.envoy.pid);
  const first = await Promise.all(sidecars.map((s) => s.envoy.waitFor("a workload certificate in /certs", () => workloadSerial(s))));
  const expiry = Math.min(...(await Promise.all(sidecars.map(workloadNotAfter))));
  const failuresBefore = await renewalFailures("unavailable");

  await world.stopServe("SIGKILL");
  const killedAt = Date.now();

  const failures: string[] = [];
  let requests = 0;
  let outageSeenAt: number | undefined;
  let outageRequests = 0;
  let restarting: Promise<void> | undefined;
  let backAt: number | undefined;
  let rotatedAt: number | undefined;
  let failedRenewals = 0;
  const servedDuringOutage = sidecars.map(() => new Set<string>());
  const started = Date.now();
  try {
    while (rotatedAt === undefined && requests < LOOP_MAX_REQUESTS && Date.now() - started < LOOP_MAX_MS) {
      requests++;
      const paced = delay(REQUEST_INTERVAL_MS);
      try {
        const r = await httpGet(sleep.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", `/r/${requests}`, 5_000);
        if (r.status !== 200) failures.push(`#${requests}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
      } catch (err) {
        failures.push(`#${requests}: ${(err as Error).message}`);
      }
      if (outageSeenAt !== undefined && restarting === undefined) outageRequests++;
      if (requests % 10 === 0) {
        const serials = await Promise.all(sidecars.map((s) => workloadSerial(s)));
        if (outageSeenAt === undefined) {
          // Both identities reached rotation and their renewals met the dead CA.
          if ((await renewalFailures("unavailable")) - failuresBefore >= 2) outageSeenAt = Date.now();
        } else if (restarting === undefined) {
          serials.forEach((v, i) => v && servedDuringOutage[i]!.add(v));
          if (outageRequests >= REQUESTS_DURING_OUTAGE) {
            failedRenewals = (await renewalFailures("unavailable")) - failuresBefore;
            // Same state dir and ports; the loop goes on while the process starts.
            restarting = world.startServe().then(() => {
              backAt = Date.now();
            });
          }
        } else if (backAt !== undefined && serials.every((v, i) => v !== undefined && v !== first[i])) rotatedAt = Date.now();
      }
      await paced;
    }
  } finally {
    await restarting;
  }
  const summary =
    `${requests} requests in ${Date.now() - started} ms; renewals failing ${outageSeenAt && outageSeenAt - killedAt} ms after the kill, ` +
    `${failedRenewals} failed renewals (backoff) before the CA was back ${backAt && backAt - killedAt} ms after the kill, ` +
    `rotated ${rotatedAt && backAt && rotatedAt - backAt} ms after that, ${rotatedAt && Math.round((expiry - rotatedAt) / 1000)} s before expiry`;
  console.log(`CA outage: ${summary}; serials ${first.join(",")} → ${(await Promise.all(sidecars.map(workloadSerial))).join(",")}`);
  assert.ok(outageSeenAt !== undefined, `no renewal met the outage (${summary})`);
  assert.equal(failures, [], `failed requests (${summary})`);
  for (const [i, s] of sidecars.entries()) {
    assert.equal([...servedDuringOutage[i]!], [first[i]], `${s.workload.name}: Envoy held its first certificate during the outage`);
    assert.is(s.envoy.pid, pids[i], `${s.workload.name}: Envoy restarted`);
    assert.is(await s.envoy.stat("sds.default.update_rejected"), 0);
  }
  assert.ok(rotatedAt !== undefined, `no rotation after the CA came back (${summary})`);
  assert.ok(rotatedAt < expiry, `rotated after the certificate expired (${summary})`);
  // Backoff, not a tight loop: two identities over the outage, each retrying at most a few times a second.
  const outageSeconds = (backAt! - outageSeenAt) / 1000 + 1;
  assert.ok(failedRenewals <= 2 * 5 * outageSeconds + 4, `${failedRenewals} failed renewals in ${outageSeconds} s`);
  assert.match(agent.stderr(), new RegExp(`"ca":"istio CA ${world.serve.ca!.replace(/\./g, "\\.")}"`), "the warn log names the CA address");
});

test("CA never back: the agent warns ahead of expiry (log naming the CA, expiry gauge, renewal failures), then Envoy's new handshakes fail", async () => {
  const sidecars = [sleep, httpbin, prober];
  const held = await Promise.all(sidecars.map((s) => s.envoy.waitFor("a workload certificate in /certs", () => workloadSerial(s))));
  const notAfter = new Map(await Promise.all(sidecars.map(async (s) => [spiffeIdOf(s), await workloadNotAfter(s)] as const)));
  const lastExpiry = Math.max(...notAfter.values());
  const failuresBefore = await renewalFailures("unavailable");
  const sslFailuresBefore = await Promise.all([prober, httpbin].map((s) => sum(s.envoy, SSL_FAILURES)));
  const stderrBefore = agent.stderr().length;

  await world.stopServe("SIGKILL");
  const caAddress = world.serve.ca!;

  // Traffic through sleep's existing connections, and the agent's metrics sampled, until all expired.
  const early: string[] = [];
  let requests = 0;
  /** Per identity: the first time the gauge and the counter said "expiring and not renewed". */
  const warnedAt = new Map<string, number>();
  const started = Date.now();
  while (Date.now() < lastExpiry + 1_000 && requests < LOOP_MAX_REQUESTS && Date.now() - started < LOOP_MAX_MS) {
    requests++;
    const paced = delay(100);
    try {
      const r = await httpGet(sleep.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", `/n/${requests}`, 5_000);
      if (r.status !== 200 && Date.now() < Math.min(...notAfter.values())) early.push(`#${requests}: HTTP ${r.status}`);
    } catch (err) {
      if (Date.now() < Math.min(...notAfter.values())) early.push(`#${requests}: ${(err as Error).message}`);
    }
    if (requests % 5 === 0) {
      const m = await agentMetrics();
      const failing = (m.get('meshkey_sds_renewal_failures_total{reason="unavailable"}') ?? 0) > failuresBefore;
      for (const id of notAfter.keys()) {
        const left = m.get(`meshkey_sds_identity_cert_expiry_seconds{spiffe_id="${id}"}`);
        if (failing && left !== undefined && left > 0 && !warnedAt.has(id)) warnedAt.set(id, Date.now());
      }
    }
    await paced;
  }
  assert.equal(early, [], "requests failed before the certificates expired");

  // The warn log: one line per identity, naming the CA and the time left, before expiry.
  const lines = agent.stderr().slice(stderrBefore).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const [id, expiresAt] of notAfter) {
    const warn = lines.find((l) => l.spiffeId === id && l.ca === `istio CA ${caAddress}` && typeof l.expiresInSeconds === "number" && l.expiresInSeconds > 0);
    assert.ok(warn, `${id}: no warn log naming the CA before expiry`);
    assert.ok((warn.time as number) < expiresAt, `${id}: warned at ${warn.time}, expiry ${expiresAt}`);
    assert.is(warn.level, 40, "warn");
    assert.ok(warnedAt.has(id) && warnedAt.get(id)! < expiresAt, `${id}: the expiry gauge and renewal counter did not warn before expiry`);
    console.log(`CA never back: ${id} warned ${Math.round((expiresAt - (warn.time as number)) / 1000)} s before expiry: "${String(warn.msg)}"`);
  }

  // New handshakes now fail: the prober's first connection to httpbin meets expired certificates.
  let probeStatus = 0;
  const afterProbe = await prober.envoy.waitFor("ssl failures on a new connection", async () => {
    try {
      probeStatus = (await httpGet(prober.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", "/probe", 5_000)).status;
    } catch {
      probeStatus = -1;
    }
    const now = await Promise.all([prober, httpbin].map((s) => sum(s.envoy, SSL_FAILURES)));
    return now.some((v, i) => v > sslFailuresBefore[i]!) ? now : undefined;
  }, 15_000);
  console.log(`CA never back: ${requests} requests until expiry, 0 failed before it; then a new connection got HTTP ${probeStatus}, ssl failures prober ${sslFailuresBefore[0]}→${afterProbe[0]}, httpbin ${sslFailuresBefore[1]}→${afterProbe[1]}`);
  assert.is.not(probeStatus, 200, "a request over a new connection succeeded with expired certificates");
  for (const [i, s] of sidecars.entries()) assert.is(await workloadSerial(s), held[i], `${s.workload.name}: the certificate Envoy held was never withdrawn or replaced`);
});

test.run();
