// The workload's token file replaced by an expired token, with real Envoy. The stream Envoy
// has keeps its certificate; when rotation closes that stream (the token meshkey cached has
// expired too), every new stream Envoy opens carries the expired file and is refused
// UNAUTHENTICATED with a message that says the token expired. Traffic keeps flowing on the
// current certificate, and once a fresh token is written Envoy's next reconnect renews it,
// without an Envoy restart. (rotation.test.ts covers a token inside the verifier's leeway.)
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import * as assert from "uvu/assert";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { envoySuite } from "../support/envoy.js";
import { createMeshWorld, startTrafficPair, httpGet, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("expired token file (real Envoy)");

const ISSUER = "https://issuer.expired-token.test";
const CERT_TTL_SECONDS = 40; // rotation at ~20 s, expiry at 40 s
const FIRST_TOKEN_SECONDS = 8; // expired (in meshkey's cache) by rotation time
const EXPIRED_AGO_SECONDS = 600; // far beyond the verifier's 60 s leeway
const LOOP_MAX_MS = 90_000;
const LOOP_MAX_REQUESTS = 4_000;
/** Pacing of the request loop (a rate, not a wait for anything). */
const REQUEST_INTERVAL_MS = 25;
/** Requests that must succeed after Envoy's new streams were refused, before the fresh token is written. */
const REQUESTS_WHILE_REFUSED = 100;

const key = await generateKeyPair("ES256");
const jwk = { ...(await exportJWK(key.publicKey)), kid: "k1", alg: "ES256" };
const jwksDir = mkdtempSync(join(tmpdir(), "meshkey-expired-token-"));
const jwksFile = join(jwksDir, "jwks.json");
writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));

let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;

function mint(w: Workload, iat: number, exp: number): Promise<string> {
  return new SignJWT({ "kubernetes.io": { namespace: w.namespace, serviceaccount: { name: w.serviceAccount, uid: "u" } } })
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .setIssuer(ISSUER)
    .setSubject(`system:serviceaccount:${w.namespace}:${w.serviceAccount}`)
    .setAudience("istio-ca")
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key.privateKey);
}
const nowSeconds = () => Math.floor(Date.now() / 1000);

function writeToken(w: Workload, token: string): void {
  writeFileSync(`${w.tokenPath}.tmp`, token);
  renameSync(`${w.tokenPath}.tmp`, w.tokenPath); // as the kubelet does: never a half-written file
}

const spiffeIdOf = (s: Sidecar) => `spiffe://cluster.local/ns/${s.workload.namespace}/sa/${s.workload.serviceAccount}`;

async function workloadCert(s: Sidecar): Promise<{ serial: string; notAfter: number } | undefined> {
  const leaves = (await s.envoy.certs()).certificates
    .flatMap((c) => c.cert_chain)
    .filter((c) => c.subject_alt_names.some((san) => san.uri === spiffeIdOf(s)));
  const serials = new Set(leaves.map((c) => c.serial_number));
  return serials.size === 1 ? { serial: leaves[0]!.serial_number, notAfter: Date.parse(leaves[0]!.expiration_time) } : undefined;
}

test.before(async () => {
  world = await createMeshWorld({
    subnet: 96,
    serveArgs: ["--cert-ttl", `${CERT_TTL_SECONDS}s`, "--jwks", jwksFile, "--jwt-issuer", ISSUER],
  });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  // sleep's first token is good for the first certificate only; httpbin's outlives the test.
  writeToken(sleepW, await mint(sleepW, nowSeconds(), nowSeconds() + FIRST_TOKEN_SECONDS));
  writeToken(httpbinW, await mint(httpbinW, nowSeconds(), nowSeconds() + 3600));
  world.writeMesh([sleepW, httpbinW]);
  ({ client: sleep, server: httpbin } = await startTrafficPair(world, sleepW, httpbinW));
});

test.after(async () => {
  await world?.close();
  rmSync(jwksDir, { recursive: true, force: true });
});

test("token file replaced by an expired token: the certificate keeps serving, new SDS streams get UNAUTHENTICATED 'token expired', and a fresh token renews it without an Envoy restart", async () => {
  const pid = sleep.envoy.pid;
  const first = await sleep.envoy.waitFor("a workload certificate in /certs", () => workloadCert(sleep));
  const closed16Before = await sleep.envoy.stat("sds.default.grpc.sdsstat.streams_closed_16");
  const rejectedBefore = await sleep.envoy.stat("sds.default.update_rejected");
  // The file now holds a token that expired ten minutes ago (a stuck token refresher).
  writeToken(sleep.workload, await mint(sleep.workload, nowSeconds() - EXPIRED_AGO_SECONDS - 3600, nowSeconds() - EXPIRED_AGO_SECONDS));

  const failures: string[] = [];
  let requests = 0;
  let refusedAt: number | undefined;
  let refusedRequests = 0;
  let freshAt: number | undefined;
  let renewed: { serial: string; notAfter: number } | undefined;
  let renewedAt: number | undefined;
  const servedWhileRefused = new Set<string>();
  const started = Date.now();
  while (renewedAt === undefined && requests < LOOP_MAX_REQUESTS && Date.now() - started < LOOP_MAX_MS) {
    requests++;
    const paced = delay(REQUEST_INTERVAL_MS);
    try {
      const r = await httpGet(sleep.workload.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", `/t/${requests}`, 5_000);
      if (r.status !== 200) failures.push(`#${requests}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    } catch (err) {
      failures.push(`#${requests}: ${(err as Error).message}`);
    }
    if (refusedAt !== undefined && freshAt === undefined) refusedRequests++;
    if (requests % 10 === 0) {
      const cert = await workloadCert(sleep);
      if (refusedAt === undefined) {
        // Rotation closed the stream, then a new stream with the expired file was refused.
        if (/closed: 16, [^\n]*token expired at/.test(sleep.envoy.log())) refusedAt = Date.now();
      } else if (freshAt === undefined) {
        if (cert) servedWhileRefused.add(cert.serial);
        if (refusedRequests >= REQUESTS_WHILE_REFUSED) {
          writeToken(sleep.workload, await mint(sleep.workload, nowSeconds(), nowSeconds() + 3600));
          freshAt = Date.now();
        }
      } else if (cert && cert.serial !== first.serial) {
        renewed = cert;
        renewedAt = Date.now();
      }
    }
    await paced;
  }
  const closed16 = (await sleep.envoy.stat("sds.default.grpc.sdsstat.streams_closed_16")) - closed16Before;
  const summary =
    `${requests} requests in ${Date.now() - started} ms; a new stream refused ${refusedAt && refusedAt - started} ms after the file was replaced, ` +
    `${closed16} streams closed with 16; fresh token after ${freshAt && freshAt - started} ms, renewed ${renewedAt && freshAt && renewedAt - freshAt} ms after that, ` +
    `${renewedAt && Math.round((first.notAfter - renewedAt) / 1000)} s before the first certificate's expiry; serial ${first.serial} → ${renewed?.serial}`;
  console.log(`expired token file: ${summary}`);
  const refusal = /StreamSecrets gRPC config stream to \S+ closed: 16, ([^\n]*token expired at [^\n]*)/.exec(sleep.envoy.log());
  if (refusal) console.log(`expired token file: Envoy logged "${refusal[1]}"`);
  assert.ok(refusedAt !== undefined, `no new SDS stream was refused as expired (${summary})`);
  assert.match(refusal![1]!, /beyond the 60 s leeway/);
  assert.not.match(refusal![1]!, /\/(tmp|var|home)\//, "the refusal carries no server path");
  assert.equal(failures, [], `failed requests (${summary})`);
  assert.equal([...servedWhileRefused], [first.serial], "Envoy kept its certificate while its new streams were refused");
  assert.ok(renewedAt !== undefined, `no renewal after the fresh token (${summary})`);
  assert.ok(renewedAt < first.notAfter, `renewed after the first certificate expired (${summary})`);
  assert.is(sleep.envoy.pid, pid, "Envoy restarted");
  assert.is(await sleep.envoy.stat("sds.default.update_rejected"), rejectedBefore);
});

test.run();
