// SDS with real Envoy: the sidecar's SDS streams go through google_grpc to meshkey's
// Unix socket, with the workload token read from a file by the file_based_metadata
// call credentials. A good token gets the token's SPIFFE identity and the root; an
// expired token, or one signed by a key meshkey does not trust, gets no certificate
// and UNAUTHENTICATED; a good token written to the file later recovers the same Envoy
// process (Envoy re-reads the file on each new stream). No workload key or
// certificate is ever written to disk.
import { Code } from "@connectrpc/connect";
import { X509Certificate, createPrivateKey, generateKeyPairSync } from "node:crypto";
import { readFileSync, readdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { SignJWT } from "jose";
import * as assert from "uvu/assert";
import { envoySuite, startEnvoy, freePort, type EnvoyCerts, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, waitForSidecarSynced, type MeshWorld, type Workload } from "../support/mesh-world.js";
import { SdsTestClient, sotwRequest } from "../sds/sds-harness.js";

const test = envoySuite("sds (real Envoy)");

let world: MeshWorld;
let good: Workload;
let expired: Workload;
let foreign: Workload;
let goodEnvoy: EnvoyProcess;
const badEnvoys = new Map<string, EnvoyProcess>();

const spiffeIdOf = (w: Workload) => `spiffe://cluster.local/ns/${w.namespace}/sa/${w.serviceAccount}`;
const stateDir = () => join(world.dir, "state");
const socketPath = () => world.serve.sds!.replace(/^unix:/, "");

/** Writes a token file as the kubelet does: a new file renamed over the old one. */
function writeToken(w: Workload, token: string): void {
  writeFileSync(`${w.tokenPath}.new`, token);
  renameSync(`${w.tokenPath}.new`, w.tokenPath);
}

function k8sClaims(w: Workload) {
  return { "kubernetes.io": { namespace: w.namespace, serviceaccount: { name: w.serviceAccount, uid: "00000000-0000-0000-0000-000000000000" } } };
}

/** A token from meshkey's own dev issuer key that expired ten minutes ago (beyond any leeway). */
async function expiredToken(w: Workload): Promise<string> {
  const key = createPrivateKey(readFileSync(join(stateDir(), "dev-issuer-key.pem")));
  const jwks = JSON.parse(readFileSync(join(stateDir(), "jwks.json"), "utf8")) as { keys: Array<{ kid: string }> };
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(k8sClaims(w))
    .setProtectedHeader({ alg: "ES256", kid: jwks.keys[0]!.kid, typ: "JWT" })
    .setIssuer("https://meshkey.dev-issuer.local")
    .setSubject(`system:serviceaccount:${w.namespace}:${w.serviceAccount}`)
    .setAudience("istio-ca")
    .setIssuedAt(now - 7200)
    .setNotBefore(now - 7200)
    .setExpirationTime(now - 600)
    .sign(key);
}

/** A well-formed, unexpired token with the dev issuer's claims, signed by a key meshkey never saw. */
async function foreignToken(w: Workload): Promise<string> {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const jwks = JSON.parse(readFileSync(join(stateDir(), "jwks.json"), "utf8")) as { keys: Array<{ kid: string }> };
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(k8sClaims(w))
    .setProtectedHeader({ alg: "ES256", kid: jwks.keys[0]!.kid, typ: "JWT" })
    .setIssuer("https://meshkey.dev-issuer.local")
    .setSubject(`system:serviceaccount:${w.namespace}:${w.serviceAccount}`)
    .setAudience("istio-ca")
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 3600)
    .sign(privateKey);
}

const chainsOf = (certs: EnvoyCerts) => certs.certificates.flatMap((c) => c.cert_chain);
const uriSansOfChains = (certs: EnvoyCerts) => chainsOf(certs).flatMap((c) => c.subject_alt_names.map((s) => s.uri).filter(Boolean));
const normSerial = (s: string) => s.toLowerCase().replace(/^0+/, "");

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const res = await fetch(`http://${world.serve.admin}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((l) => line.includes(l))) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

/** StreamSecrets on meshkey's socket with a token in Envoy's header: the status it ends with. */
async function streamStatusWith(token: string): Promise<{ code: number; details: string; messages: number }> {
  const client = new SdsTestClient(socketPath());
  try {
    const s = client.stream({ kind: "header", token });
    s.send(sotwRequest(["default"]));
    const status = await Promise.race([
      s.status,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no status within 10 s")), 10_000).unref()),
    ]);
    return { ...status, messages: s.received.length };
  } finally {
    client.close();
  }
}

/** Starts a sidecar Envoy without waiting for /ready (a sidecar without certificates may never be ready). */
async function startBareSidecar(w: Workload): Promise<EnvoyProcess> {
  const adminPort = await freePort();
  const envoy = await startEnvoy({
    config: world.bootstrap(w, adminPort),
    adminPort,
    name: `envoy ${w.name}.${w.namespace}`,
    waitReady: false,
  });
  await envoy.waitFor("the admin to answer", async () => (await envoy.admin("/server_info")).status === 200);
  return envoy;
}

/** How many times Envoy logged its SDS stream being closed with UNAUTHENTICATED (16). */
const unauthenticatedCloses = (envoy: EnvoyProcess) => (envoy.log().match(/StreamSecrets gRPC config stream to \S+ closed[^:]*: 16\b/g) ?? []).length;

test.before(async () => {
  world = await createMeshWorld({ subnet: 51 });
  good = await world.workload({ name: "httpbin", namespace: "foo" });
  expired = await world.workload({ name: "expired", namespace: "foo" });
  foreign = await world.workload({ name: "foreign", namespace: "bar" });
  world.writeMesh([good, expired, foreign]);
  writeToken(expired, await expiredToken(expired));
  writeToken(foreign, await foreignToken(foreign));
  goodEnvoy = (await world.startSidecar(good)).envoy;
  badEnvoys.set("expired", await startBareSidecar(expired));
  badEnvoys.set("foreign", await startBareSidecar(foreign));
});

test.after(async () => {
  for (const e of badEnvoys.values()) await e.stop();
  await world?.close();
});

test("a good token file: Envoy's /certs holds the token's SPIFFE ID in the chain and meshkey's root as ca_cert", async () => {
  await waitForSidecarSynced(goodEnvoy);
  assert.ok((await goodEnvoy.stat("sds.default.update_success")) >= 1);
  assert.ok((await goodEnvoy.stat("sds.ROOTCA.update_success")) >= 1);
  assert.is(await goodEnvoy.stat("sds.default.update_rejected"), 0, "Envoy rejected a default secret");
  assert.is(await goodEnvoy.stat("sds.ROOTCA.update_rejected"), 0, "Envoy rejected a ROOTCA secret");
  const certs = await goodEnvoy.waitFor("a certificate chain in /certs", async () => {
    const c = await goodEnvoy.certs();
    return chainsOf(c).length > 0 ? c : undefined;
  });
  assert.equal([...new Set(uriSansOfChains(certs))], [spiffeIdOf(good)]);
  const root = new X509Certificate(readFileSync(join(stateDir(), "root-cert.pem")));
  const caSerials = new Set(certs.certificates.flatMap((c) => c.ca_cert).map((c) => normSerial(c.serial_number)));
  assert.ok(caSerials.size > 0, "no ca_cert in /certs");
  assert.equal([...caSerials], [normSerial(root.serialNumber)], "ca_cert is meshkey's root");
  // Every TLS context that has a chain also has the root: inbound (server) and outbound (client).
  for (const c of certs.certificates) {
    if (c.cert_chain.length > 0) assert.ok(c.ca_cert.length > 0, "a TLS context with a chain but no ca_cert");
  }
});

for (const kind of ["expired", "foreign"] as const) {
  test(`an ${kind === "expired" ? "expired token" : "token from an unknown signing key"}: no certificate, and the stream closes with UNAUTHENTICATED`, async () => {
    const envoy = badEnvoys.get(kind)!;
    const w = kind === "expired" ? expired : foreign;
    // Envoy tried (and was refused) at least twice: the first attempt and one retry.
    await envoy.waitForStat("sds.default.grpc.sdsstat.streams_closed_16", (v) => v >= 2, 30_000);
    assert.ok(unauthenticatedCloses(envoy) >= 2, "Envoy's log: 'StreamSecrets gRPC config stream to … closed: 16'");
    assert.is(await envoy.stat("sds.default.grpc.sdsstat.streams_closed_0"), 0, "a stream closed with OK");
    assert.is(await envoy.stat("sds.default.update_success"), 0, "sds.default.update_success");
    assert.is(await envoy.stat("sds.ROOTCA.update_success"), 0, "sds.ROOTCA.update_success");
    assert.equal(chainsOf(await envoy.certs()), [], "a certificate chain in /certs");
    // meshkey's side: the refusals are counted, and the same header on the same socket is refused.
    assert.ok((await metric("meshkey_sds_auth_failures_total", { reason: "invalid" })) >= 2, "meshkey_sds_auth_failures_total{reason=invalid}");
    const status = await streamStatusWith(readFileSync(w.tokenPath, "utf8"));
    assert.is(status.code, Code.Unauthenticated, `status ${status.code}: ${status.details}`);
    assert.is(status.messages, 0, "a refused stream received a response");
    assert.match(status.details, /invalid workload token/);
  });
}

for (const kind of ["expired", "foreign"] as const) {
  test(`${kind}: a good token written to the file recovers the same Envoy process (no restart)`, async () => {
    const envoy = badEnvoys.get(kind)!;
    const w = kind === "expired" ? expired : foreign;
    const pid = envoy.pid;
    writeToken(w, world.token(w.namespace, w.serviceAccount));
    // Envoy's retry backoff (jittered, growing to 30 s) decides when the next stream opens.
    await envoy.waitForStat("sds.default.update_success", (v) => v >= 1, 60_000);
    await envoy.waitForStat("sds.ROOTCA.update_success", (v) => v >= 1, 60_000);
    assert.is(envoy.pid, pid);
    assert.not.ok(envoy.exited(), "Envoy exited");
    const certs = await envoy.waitFor("the chain in /certs", async () => {
      const c = await envoy.certs();
      return uriSansOfChains(c).length > 0 ? c : undefined;
    });
    assert.equal([...new Set(uriSansOfChains(certs))], [spiffeIdOf(w)]);
  });
}

function* filesUnder(dir: string): Generator<string> {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    const st = statSync(p, { throwIfNoEntry: false });
    if (st?.isDirectory()) yield* filesUnder(p);
    else if (st?.isFile()) yield p;
  }
}

test("meshkey wrote no workload key or certificate to its state dir or socket dir", async () => {
  await waitForSidecarSynced(goodEnvoy);
  const allowedKeys = new Set(["root-key.pem", "dev-issuer-key.pem"]); // the CA's and the dev issuer's own keys
  const allowedCerts = new Set(["root-cert.pem"]);
  const dirs = [stateDir(), dirname(socketPath())];
  const seen: string[] = [];
  for (const dir of dirs) {
    for (const f of filesUnder(dir)) {
      const name = relative(dir, f);
      seen.push(name);
      const text = readFileSync(f, "latin1");
      if (text.includes("PRIVATE KEY")) assert.ok(allowedKeys.has(name), `${f} holds a private key`);
      if (text.includes("BEGIN CERTIFICATE")) assert.ok(allowedCerts.has(name), `${f} holds a certificate`);
    }
  }
  // The root file holds the root only, never a leaf Envoy received.
  const root = new X509Certificate(readFileSync(join(stateDir(), "root-cert.pem")));
  const leafSerials = chainsOf(await goodEnvoy.certs()).map((c) => normSerial(c.serial_number));
  assert.ok(leafSerials.length > 0);
  assert.not.ok(leafSerials.includes(normSerial(root.serialNumber)));
  assert.ok(seen.includes("root-key.pem"), `state dir listing: ${seen.join(", ")}`);
});

test.run();
