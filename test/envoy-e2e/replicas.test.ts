// Two control-plane replicas with real Envoy: two `meshkey serve` processes share a
// plugged-in CA (--plugin-certs: an intermediate made here with openssl) and one mesh
// file, each with its own state dir, SDS socket and ports. They are the two endpoints
// of every sidecar's xds-grpc cluster (`meshkey bootstrap --xds-address A,B`).
//
// SDS comes from a third, agent-only process (--no-xds --no-ca --ca-provider istio),
// as the node agent does in a split deployment: SDS is node-local and must not go down
// with an ADS replica. Killing an ADS replica then takes nothing from the data plane's
// certificates (the agent keeps serving what it holds, and signs through a replica's CA).
//
// The replica the Envoy is connected to is found from Envoy's own /clusters (the
// xds-grpc host with an active connection) and checked against the replicas'
// /debug/syncz; that replica is SIGKILLed (then, restarted, the other one frozen with
// SIGSTOP) under a bounded request loop through two sidecars.
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { stringify as toYaml } from "yaml";
import { createKeyAndCsr, readCertificateInfo } from "../../src/ca/index.js";
import { createIstioCaProvider } from "../../src/sds/index.js";
import { envoySuite, freePort, startEnvoy, statsMatching, type EnvoyProcess } from "../support/envoy.js";
import { httpGet, meshkeyCli, waitForSidecarSynced } from "../support/mesh-world.js";
import { startServeProcess, type ServeProcess } from "../support/serve-process.js";

const test = envoySuite("replicas");

const TYPES = {
  cds: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  eds: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  lds: "type.googleapis.com/envoy.config.listener.v3.Listener",
  rds: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
};

interface Pod {
  name: string;
  namespace: string;
  port: number;
  podIp: string;
  workloadPort: number;
  nodeId: string;
  tokenPath: string;
}
interface Replica {
  name: string;
  args: string[];
  serve: ServeProcess;
  xds: string;
  frozen: boolean;
}
interface SyncType {
  typeUrl: string;
  versionSent: string;
  versionAcked: string;
}
interface SyncNode {
  nodeId: string;
  streams: number;
  types: SyncType[];
}

let dir: string;
let cacerts: string;
let tokenState: string;
const replicas: Replica[] = [];
let agent: ServeProcess;
const pods: Pod[] = [];
const envoys: EnvoyProcess[] = [];
let app: Server;
/** Where each test left things: the replica the Envoys are on. */
let current: Replica;

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** An offline root and an intermediate it signs, laid out as Istio's cacerts (no root key kept). */
function makeCacerts(out: string): void {
  mkdirSync(out);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(["req", "-x509", "-new", ...ec, "-keyout", join(out, "root-key.pem"), "-out", join(out, "root-cert.pem"), "-subj", "/O=meshkey test/CN=Replicas Root CA", "-days", "30",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  openssl(["req", "-new", ...ec, "-keyout", join(out, "ca-key.pem"), "-out", join(out, "ca.csr"), "-subj", "/O=meshkey test/CN=Replicas Intermediate CA"]);
  writeFileSync(join(out, "ext.cnf"), "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n");
  openssl(["x509", "-req", "-in", join(out, "ca.csr"), "-CA", join(out, "root-cert.pem"), "-CAkey", join(out, "root-key.pem"), "-CAcreateserial",
    "-days", "20", "-extfile", join(out, "ext.cnf"), "-extensions", "v3", "-out", join(out, "ca-cert.pem")]);
  writeFileSync(join(out, "cert-chain.pem"), readFileSync(join(out, "ca-cert.pem"), "utf8") + readFileSync(join(out, "root-cert.pem"), "utf8"));
  unlinkSync(join(out, "root-key.pem"));
}

const token = (namespace: string, serviceAccount: string) =>
  meshkeyCli(["token", "--namespace", namespace, "--service-account", serviceAccount, "--state-dir", tokenState]).trim();

async function startReplica(name: string, xdsPort: number): Promise<Replica> {
  const state = join(dir, name);
  const args = [
    "--state-dir", state,
    "--sds-socket", join(state, "sds", "uds_path"),
    "--xds-listen", `127.0.0.1:${xdsPort}`,
    "--xds-tls-listen", "127.0.0.1:0",
    "--ca-listen", "127.0.0.1:0",
    "--admin-listen", "127.0.0.1:0",
    "--mesh", join(dir, "mesh.yaml"),
    "--plugin-certs", cacerts,
    "--jwks", join(tokenState, "jwks.json"),
  ];
  return { name, args, serve: await startServeProcess(args), xds: `127.0.0.1:${xdsPort}`, frozen: false };
}

async function syncz(r: Replica): Promise<SyncNode[]> {
  const res = await fetch(`http://${r.serve.admin}/debug/syncz`, { signal: AbortSignal.timeout(2_000) });
  return (await res.json()) as SyncNode[];
}

/** The node's per-type ACKed versions on a replica, once every type is ACKed on an open stream. */
async function ackedOn(r: Replica, nodeId: string): Promise<Record<string, string> | undefined> {
  const n = (await syncz(r)).find((x) => x.nodeId === nodeId);
  if (!n || n.streams < 1) return undefined;
  const out: Record<string, string> = {};
  for (const t of Object.values(TYPES)) {
    const s = n.types.find((x) => x.typeUrl === t);
    if (!s || s.versionAcked === "" || s.versionAcked !== s.versionSent) return undefined;
    out[t] = s.versionAcked;
  }
  return out;
}

/** The xds-grpc hosts of an Envoy and their active connections, from its /clusters. */
async function xdsHosts(envoy: EnvoyProcess): Promise<Map<string, number>> {
  const { body } = await envoy.admin("/clusters");
  const hosts = new Map<string, number>();
  for (const m of body.matchAll(/^xds-grpc::([^:]+:\d+)::cx_active::(\d+)$/gm)) hosts.set(m[1]!, Number(m[2]));
  return hosts;
}

/** The one replica an Envoy has an active xds-grpc connection to (undefined while moving). */
async function connectedReplica(envoy: EnvoyProcess): Promise<Replica | undefined> {
  const active = [...(await xdsHosts(envoy))].filter(([, cx]) => cx > 0).map(([h]) => h);
  if (active.length !== 1) return undefined;
  return replicas.find((r) => r.xds === active[0]);
}

/**
 * Envoy's own view of the config versions it holds: version_info of CDS, LDS and RDS from
 * /config_dump; for EDS (whose dump carries no version_info) each cluster's `version`
 * gauge in /stats, the hash Envoy keeps of the last accepted EDS version_info.
 */
async function envoyVersions(envoy: EnvoyProcess): Promise<Record<string, string[]>> {
  const dump = (await envoy.configDump()) as unknown as { configs: Array<Record<string, any>> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  const of = (type: string) => dump.configs.find((c) => c["@type"] === `type.googleapis.com/envoy.admin.v3.${type}`) ?? {};
  const uniq = (xs: Array<string | undefined>) => [...new Set(xs.filter((x): x is string => !!x))].sort();
  const clusters = of("ClustersConfigDump");
  const listeners = of("ListenersConfigDump");
  return {
    [TYPES.cds]: uniq([clusters.version_info, ...(clusters.dynamic_active_clusters ?? []).map((c: { version_info?: string }) => c.version_info)]),
    [TYPES.eds]: Object.entries(await statsMatching(envoy, /^cluster\.outbound\|.*\.version$/)).map(([k, v]) => `${k}=${v}`).sort(),
    [TYPES.lds]: uniq([listeners.version_info, ...(listeners.dynamic_listeners ?? []).map((l: { active_state?: { version_info?: string } }) => l.active_state?.version_info)]),
    [TYPES.rds]: uniq((of("RoutesConfigDump").dynamic_route_configs ?? []).map((c: { version_info?: string }) => c.version_info)),
  };
}

/** Counters that say Envoy rebuilt or refused something: they must not move during a failover. */
const CHURN = /^(listener_manager\.(listener_added|listener_modified|listener_removed|lds\.update_rejected)|cluster_manager\.(cluster_added|cluster_modified|cluster_removed|cds\.update_rejected))$/;

interface Traffic {
  stop(): Promise<{ sent: number; failed: string[] }>;
}

/** A bounded request loop (count and time) from sleep's sidecar to httpbin through both sidecars. */
function startTraffic(maxRequests = 20_000, maxMs = 90_000): Traffic {
  const sleep = pods[0]!;
  let stopping = false;
  let sent = 0;
  const failed: string[] = [];
  const deadline = Date.now() + maxMs;
  const loop = (async () => {
    while (!stopping && sent < maxRequests && Date.now() < deadline) {
      sent++;
      try {
        const r = await httpGet(sleep.podIp, 8000, "httpbin.bar.svc.cluster.local:8000", "/", 3_000);
        if (r.status !== 200) failed.push(`HTTP ${r.status}: ${r.body.slice(0, 200)}`);
      } catch (err) {
        failed.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, 5)); // pacing on 2 shared cores, not a wait for a condition
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
      return { sent, failed };
    },
  };
}

const ms = (t0: number) => Date.now() - t0;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshkey-replicas-"));
  cacerts = join(dir, "cacerts");
  makeCacerts(cacerts);
  tokenState = join(dir, "tokens-issuer");
  mkdirSync(join(dir, "tokens"));

  for (const [i, spec] of [{ name: "sleep", namespace: "foo", port: 8081 }, { name: "httpbin", namespace: "bar", port: 8000 }].entries()) {
    const podIp = `127.75.0.${i + 1}`;
    const pod: Pod = {
      ...spec,
      podIp,
      workloadPort: await freePort(),
      nodeId: `sidecar~${podIp}~${spec.name}-1.${spec.namespace}~${spec.namespace}.svc.cluster.local`,
      tokenPath: join(dir, "tokens", `${spec.name}.${spec.namespace}`),
    };
    writeFileSync(pod.tokenPath, token(pod.namespace, pod.name));
    pods.push(pod);
  }
  writeFileSync(join(dir, "mesh.yaml"), toYaml({
    services: pods.map((p) => ({
      name: p.name, namespace: p.namespace, serviceAccount: p.name,
      ports: [{ name: "http", port: p.port, protocol: "HTTP" }],
      endpoints: [{ address: p.podIp, port: p.workloadPort }],
    })),
  }));

  replicas.push(await startReplica("replica-a", await freePort()));
  replicas.push(await startReplica("replica-b", await freePort()));
  const agentState = join(dir, "agent");
  agent = await startServeProcess([
    "--no-xds", "--no-ca",
    "--ca-provider", "istio", "--ca-address", replicas[0]!.serve.ca!, "--ca-root-cert", join(cacerts, "root-cert.pem"),
    "--jwks", join(tokenState, "jwks.json"),
    "--state-dir", agentState, "--sds-socket", join(agentState, "sds", "uds_path"), "--admin-listen", "127.0.0.1:0",
  ]);

  const httpbin = pods[1]!;
  app = createServer((req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ service: "httpbin.bar", path: req.url })));
  await new Promise<void>((r) => app.listen(httpbin.workloadPort, "127.0.0.1", r));

  for (const pod of pods) {
    const adminPort = await freePort();
    const bootstrap = join(dir, `envoy-${pod.name}.json`);
    meshkeyCli([
      "bootstrap", "--role", "sidecar", "--node-id", pod.nodeId, "--namespace", pod.namespace, "--service-account", pod.name,
      "--xds-address", replicas.map((r) => r.xds).join(","),
      "--sds-socket", agent.sds!.replace(/^unix:/, ""), "--token-path", pod.tokenPath, "--admin-port", String(adminPort), "-o", bootstrap,
    ]);
    envoys.push(await startEnvoy({ config: bootstrap, adminPort, name: `envoy ${pod.name}.${pod.namespace}` }));
  }
  for (const envoy of envoys) await waitForSidecarSynced(envoy);
  await envoys[0]!.waitFor("a 200 from httpbin.bar through the sidecars", async () => (await httpGet(pods[0]!.podIp, 8000, "httpbin.bar:8000")).status === 200);
});

test.after(async () => {
  for (const envoy of envoys) await envoy.stop();
  await new Promise((r) => (app ? app.close(r) : r(undefined)));
  for (const r of replicas) {
    if (r.frozen) process.kill(r.serve.child.pid!, "SIGCONT");
    await r.serve.stop();
  }
  await agent?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("every sidecar's xds-grpc cluster has one endpoint per replica, and its ADS stream is on one of them", async () => {
  for (const [i, envoy] of envoys.entries()) {
    assert.equal([...(await xdsHosts(envoy)).keys()].sort(), replicas.map((r) => r.xds).sort());
    const on = await envoy.waitFor("one active xds-grpc connection", () => connectedReplica(envoy));
    // The replica agrees: it holds the node's stream, and the other replica does not.
    assert.ok(await ackedOn(on, pods[i]!.nodeId), `${on.name} has ${pods[i]!.nodeId} synced`);
    const other = replicas.find((r) => r !== on)!;
    assert.not.ok((await syncz(other)).some((n) => n.nodeId === pods[i]!.nodeId && n.streams > 0));
  }
});

test("certificates signed by either replica verify against the one plugged-in root", async () => {
  const root = new X509Certificate(readFileSync(join(cacerts, "root-cert.pem")));
  const intermediate = new X509Certificate(readFileSync(join(cacerts, "ca-cert.pem")));
  for (const r of replicas) {
    const ca = createIstioCaProvider({ address: r.serve.ca!, rootCertPem: root.toString() });
    try {
      const { csrPem } = await createKeyAndCsr("ec-p256");
      const chain = await ca.sign(csrPem, token("foo", "sleep"), 3600);
      const leaf = new X509Certificate(chain[0]!);
      assert.is(readCertificateInfo(chain[0]!).uriSans[0], "spiffe://cluster.local/ns/foo/sa/sleep", r.name);
      assert.is(new X509Certificate(chain[1]!).fingerprint256, intermediate.fingerprint256, `${r.name}: signed by the plugged-in intermediate`);
      assert.ok(leaf.verify(intermediate.publicKey), `${r.name}: leaf signature`);
      assert.ok(intermediate.verify(root.publicKey), "intermediate signature");
      const files = ["leaf", "inter"].map((n, i) => {
        const f = join(dir, `${r.name}-${n}.pem`);
        writeFileSync(f, chain[i]!);
        return f;
      });
      const v = spawnSync("openssl", ["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", join(cacerts, "root-cert.pem"), "-untrusted", files[1]!, files[0]!], { encoding: "utf8" });
      assert.is(v.status, 0, `${r.name}: openssl verify: ${v.stdout}${v.stderr}`);
    } finally {
      ca.close();
    }
  }
  // What the Envoys trust (SDS ROOTCA from the agent) is that same root.
  const rootSerial = root.serialNumber.toLowerCase().replace(/^0+/, "");
  for (const envoy of envoys) {
    const certs = await envoy.certs();
    const trusted = certs.certificates.flatMap((c) => c.ca_cert.map((x) => x.serial_number.toLowerCase().replace(/^0+/, "")));
    assert.ok(trusted.includes(rootSerial), `Envoy trusts the plugged-in root (serial ${rootSerial}); it has ${trusted.join(", ")}`);
  }
});

test("SIGKILL of the replica the Envoy is on: it moves to the other one and no request through the two sidecars fails", async () => {
  const sleep = envoys[0]!;
  const victim = (await sleep.waitFor("sleep's replica", () => connectedReplica(sleep)))!;
  const survivor = replicas.find((r) => r !== victim)!;
  const onVictim = [];
  for (const [i, envoy] of envoys.entries()) if ((await connectedReplica(envoy)) === victim) onVictim.push(i);
  const versionsBefore = await Promise.all(envoys.map(envoyVersions));
  const ackedBefore = await ackedOn(victim, pods[0]!.nodeId);
  const churnBefore = await Promise.all(envoys.map((e) => statsMatching(e, CHURN)));

  const traffic = startTraffic();
  await sleep.waitFor("some traffic before the kill", async () => (await sleep.stat("cluster.outbound|8000||httpbin.bar.svc.cluster.local.upstream_rq_200")) >= 20);
  const t0 = Date.now();
  const killed = await victim.serve.stop("SIGKILL");
  assert.is(killed.signal, "SIGKILL");
  const movedAt: number[] = [];
  const syncedAt: number[] = [];
  for (const i of onVictim) {
    const envoy = envoys[i]!;
    await envoy.waitFor(`envoy ${pods[i]!.name} connected to ${survivor.name}`, async () => (await connectedReplica(envoy)) === survivor, 20_000);
    movedAt.push(ms(t0));
    const acked = await envoy.waitFor(`${survivor.name} has every type ACKed by ${pods[i]!.name}`, () => ackedOn(survivor, pods[i]!.nodeId), 20_000);
    syncedAt.push(ms(t0));
    if (i === 0) assert.equal(acked, ackedBefore, "the surviving replica sent the versions the killed one had, and Envoy ACKed them");
  }
  // Keep the loop running a little past the move, then count.
  const sentAtSync = (await sleep.stat("cluster.outbound|8000||httpbin.bar.svc.cluster.local.upstream_rq_200")) + 200;
  await sleep.waitFor("traffic after the move", async () => (await sleep.stat("cluster.outbound|8000||httpbin.bar.svc.cluster.local.upstream_rq_200")) >= sentAtSync);
  const { sent, failed } = await traffic.stop();
  const xdsStats = await statsMatching(sleep, /^cluster\.xds-grpc\.(upstream_cx_connect_fail|upstream_cx_destroy_remote)$/);
  console.log(`replicas: SIGKILL ${victim.name}: ${sent} requests, ${failed.length} failed; sidecars on it: ${onVictim.length}; connected to ${survivor.name} after ${movedAt.join("/")} ms, all types ACKed after ${syncedAt.join("/")} ms; sleep's xds-grpc ${JSON.stringify(xdsStats)}; sleep's versions before ${JSON.stringify(versionsBefore[0])} after ${JSON.stringify(await envoyVersions(sleep))}`);
  assert.equal(failed, [], `${failed.length} of ${sent} requests failed`);

  for (const [i, envoy] of envoys.entries()) {
    assert.equal(await envoyVersions(envoy), versionsBefore[i], `envoy ${pods[i]!.name} holds the same config versions after the move`);
    assert.equal(await statsMatching(envoy, CHURN), churnBefore[i], `envoy ${pods[i]!.name} added, changed or refused no listener or cluster`);
    assert.is(await envoy.stat("control_plane.connected_state"), 1);
  }
  current = survivor;
});

test("a replica that was killed rejoins when restarted, and a frozen replica (SIGSTOP, no reset) is left within the HTTP/2 keepalive timeout", async () => {
  const dead = replicas.find((r) => r !== current)!;
  dead.serve = await startServeProcess(dead.args);
  const sleep = envoys[0]!;
  await sleep.waitFor("Envoy sees the restarted replica again", async () => (await xdsHosts(sleep)).has(dead.xds));
  const on = await sleep.waitFor("sleep's replica", () => connectedReplica(sleep));
  assert.is(on, current, "Envoy stays where it is while that replica lives");
  const versionsBefore = await envoyVersions(sleep);
  const timeoutsBefore = await sleep.stat("cluster.xds-grpc.http2.keepalive_timeout");

  const traffic = startTraffic();
  const t0 = Date.now();
  process.kill(current.serve.child.pid!, "SIGSTOP");
  current.frozen = true;
  try {
    // The frozen process's kernel still ACKs TCP: only the HTTP/2 PING (10 s interval, 5 s timeout) can tell.
    await sleep.waitFor(`sleep's Envoy connected to ${dead.name}`, async () => (await connectedReplica(sleep)) === dead, 40_000);
    const movedMs = ms(t0);
    await sleep.waitFor(`${dead.name} has every type ACKed`, () => ackedOn(dead, pods[0]!.nodeId), 20_000);
    const syncedMs = ms(t0);
    const { sent, failed } = await traffic.stop();
    console.log(`replicas: SIGSTOP ${current.name}: ${sent} requests, ${failed.length} failed; connected to ${dead.name} after ${movedMs} ms, all types ACKed after ${syncedMs} ms`);
    assert.equal(failed, [], `${failed.length} of ${sent} requests failed`);
    assert.ok((await sleep.stat("cluster.xds-grpc.http2.keepalive_timeout")) > timeoutsBefore, "Envoy closed the connection on a PING timeout");
    assert.equal(await envoyVersions(sleep), versionsBefore);
  } finally {
    await traffic.stop();
    process.kill(current.serve.child.pid!, "SIGCONT");
    current.frozen = false;
  }
});

test.run();
