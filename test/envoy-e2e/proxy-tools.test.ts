// The operator verbs with real Envoy sidecars connected: proxy-status shows them
// SYNCED and, after a listener Envoy refuses, NACKED with Envoy's own message;
// proxy-config secret shows the SAN Envoy's /certs shows; proxy-config --envoy
// lists the clusters Envoy's /clusters lists; fetch-secret prints the token's identity.
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:net";
import * as assert from "uvu/assert";
import { envoySuite, freePort } from "../support/envoy.js";
import { createMeshWorld, startTrafficPair, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("proxy-tools");

let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;
let serving: Workload[];

function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/meshkey.js", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
const addrs = () => ["--xds", world.serve.xds!, "--admin", world.serve.admin];
const lineOf = (out: string, start: string) => out.split("\n").find((l) => l.startsWith(start)) ?? "";

test.before(async () => {
  world = await createMeshWorld({ subnet: 80 });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  serving = [sleepW, httpbinW];
  world.writeMesh(serving);
  ({ client: sleep, server: httpbin } = await startTrafficPair(world, sleepW, httpbinW));
});

test.after(async () => {
  await world?.close();
});

test("proxy-status lists real Envoy sidecars as SYNCED for every type", async () => {
  const out = await sleep.envoy.waitFor("both sidecars SYNCED in proxy-status", async () => {
    const r = await cli(["proxy-status", ...addrs()]);
    const synced = (id: string) => lineOf(r.stdout, id).split(/\s{3,}/).slice(2);
    const ok = [sleep, httpbin].every((s) => {
      const cells = synced(s.workload.nodeId);
      return cells.length === 5 && cells.every((c) => c === "SYNCED" || c === "-");
    });
    return ok ? r.stdout : undefined;
  });
  for (const s of [sleep, httpbin]) assert.match(lineOf(out, s.workload.nodeId), /\ssidecar\s+SYNCED\s+SYNCED\s+\S+\s+\S+\s+SYNCED$/);
});

test("after Envoy refuses a listener, proxy-status shows LDS NACKED with Envoy's message", async () => {
  const podIp = httpbin.workload.podIp;
  const taken = await freePort(podIp);
  const blocker: Server = createServer();
  await new Promise<void>((r) => blocker.listen(taken, podIp, r));
  try {
    const rejected = await httpbin.envoy.stat("listener_manager.lds.update_rejected");
    world.writeMesh([...serving, { ...httpbin.workload, name: "blocked", serviceAccount: "blocked", port: taken }]);
    await httpbin.envoy.waitForStat("listener_manager.lds.update_rejected", (v) => v > rejected);
    const envoyError = await httpbin.envoy.waitFor("the refused listener's error_state", async () => {
      const dump = await httpbin.envoy.configDump("?resource=dynamic_listeners");
      return (dump.configs as Array<{ error_state?: { details?: string } }>).find((l) => l.error_state?.details)?.error_state?.details;
    });
    const nodeId = httpbin.workload.nodeId;
    const r = await httpbin.envoy.waitFor("proxy-status to show the NACK", async () => {
      const x = await cli(["proxy-status", ...addrs()]);
      return lineOf(x.stdout, nodeId).split(/\s{3,}/)[3] === "NACKED" ? x : undefined;
    });
    const message = lineOf(r.stdout, `${nodeId} LDS NACKED`);
    assert.ok(message.includes(envoyError.split("\n")[0]!), `proxy-status: ${message}\nEnvoy: ${envoyError}`);
    assert.match(lineOf(r.stdout, sleep.workload.nodeId).split(/\s{3,}/)[3]!, "SYNCED");
    const detail = await cli(["proxy-status", nodeId, ...addrs()]);
    assert.is(detail.status, 1);
    assert.match(detail.stdout, /^LDS differ: meshkey sent, the proxy has not ACKed/m);
  } finally {
    await new Promise((r) => blocker.close(r));
  }
  world.writeMesh(serving);
  await httpbin.envoy.waitFor("httpbin SYNCED again", async () => {
    const x = await cli(["proxy-status", httpbin.workload.nodeId, ...addrs()]);
    return x.status === 0 ? x : undefined;
  });
});

test("proxy-config secret shows the SAN and serial that Envoy's /certs shows", async () => {
  const certs = await sleep.envoy.certs();
  const leaf = certs.certificates.flatMap((c) => c.cert_chain)[0]!;
  const san = leaf.subject_alt_names.find((s) => s.uri)!.uri!;
  assert.is(san, "spiffe://cluster.local/ns/foo/sa/sleep");
  for (const args of [[sleep.workload.nodeId, ...addrs()], ["--envoy", `http://127.0.0.1:${sleep.envoy.adminPort}`]]) {
    const r = await cli(["proxy-config", "secret", ...args]);
    assert.is(r.status, 0, r.stderr);
    const row = lineOf(r.stdout, "default").split(/\s{3,}/);
    assert.is(row[3], san, r.stdout);
    assert.is(row[4], leaf.serial_number.toLowerCase().replace(/^(00)+/, ""), r.stdout);
    assert.match(r.stdout, /^ROOTCA SHA256 Fingerprint=([0-9A-F]{2}:){31}[0-9A-F]{2}$/m);
    assert.not.match(r.stdout, /PRIVATE KEY/);
  }
});

test("proxy-config cluster --envoy lists the clusters Envoy's /clusters lists", async () => {
  const { body } = await sleep.envoy.admin("/clusters?format=json");
  const names = (JSON.parse(body) as { cluster_statuses: Array<{ name: string }> }).cluster_statuses.map((c) => c.name).sort();
  const r = await cli(["proxy-config", "cluster", "--envoy", `http://127.0.0.1:${sleep.envoy.adminPort}`, "-o", "json"]);
  assert.is(r.status, 0, r.stderr);
  const listed = (JSON.parse(r.stdout) as Array<{ name: string }>).map((c) => c.name).sort();
  assert.equal(listed, names);
  const table = await cli(["proxy-config", "cluster", "--envoy", `http://127.0.0.1:${sleep.envoy.adminPort}`]);
  assert.match(table.stdout, /^httpbin\.bar\.svc\.cluster\.local\s+8000\s+-\s+outbound\s+EDS\s+spiffe:\/\/cluster\.local\/ns\/bar\/sa\/httpbin$/m);
});

test("fetch-secret prints the identity of the token it was given", async () => {
  const r = await cli(["fetch-secret", "--token", httpbin.workload.tokenPath, "--socket", world.serve.sds!.replace(/^unix:/, "")]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^SPIFFE ID:\s+spiffe:\/\/cluster\.local\/ns\/bar\/sa\/httpbin$/m);
  assert.match(r.stdout, "verifies against ROOTCA");
});

test.run();
