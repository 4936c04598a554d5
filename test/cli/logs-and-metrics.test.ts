// What an operator reads from a running `meshkey serve`: /metrics (standard metrics
// under meshkey_ once, no expiry sample without a certificate, counters at 0 from the
// start, build info, root expiry) and the log (text format, refused tokens named with
// what was expected, proxies connecting and disconnecting).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import type { DiscoveryRequestSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { isolatedServeArgs, startServeProcess, type ServeProcess } from "../support/serve-process.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-telemetry-"));
const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
const version = (JSON.parse(spawnSync("node", ["-p", "JSON.stringify(require('./package.json'))"], { encoding: "utf8" }).stdout) as { version: string }).version;

let serve: ServeProcess;
const started: ServeProcess[] = [];
test.before(async () => {
  serve = await startServeProcess([...isolatedServeArgs(join(dir, "a")), "--log-level", "info"]);
  started.push(serve);
});
test.after(async () => {
  for (const s of started) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

const metrics = async () => (await fetch(`http://${serve.admin}/metrics`)).text();

/** Waits (bounded) until a JSON log line of `s` satisfies `match`. */
async function logLine(s: ServeProcess, match: (rec: Record<string, unknown>) => boolean, what: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of s.stderr().split("\n")) {
      if (!line.startsWith("{")) continue;
      const rec = JSON.parse(line) as Record<string, unknown>;
      if (match(rec)) return rec;
    }
    if (Date.now() > deadline) throw new Error(`no log line ${what} within ${timeoutMs} ms:\n${s.stderr().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("process and nodejs metrics carry the meshkey_ prefix once", async () => {
  const text = await metrics();
  assert.match(text, /^meshkey_process_cpu_seconds_total \d/m);
  assert.match(text, /^meshkey_nodejs_eventloop_lag_seconds \d/m);
  assert.not.match(text, /meshkey_process_process_|meshkey_process_nodejs_/);
});

test("with no certificate issued yet, the certificate expiry gauge has no sample (never 0)", async () => {
  const text = await metrics();
  assert.match(text, /^# TYPE meshkey_sds_cert_expiry_seconds gauge$/m);
  assert.not.match(text, /^meshkey_sds_cert_expiry_seconds[ {]/m);
  assert.not.match(text, /^meshkey_sds_identity_cert_expiry_seconds[ {]/m);
});

test("counters read 0 from the start, for every label value meshkey uses", async () => {
  const text = await metrics();
  for (const series of [
    'meshkey_ca_csr_total{result="issued"} 0',
    'meshkey_ca_csr_total{result="unauthenticated"} 0',
    'meshkey_sds_auth_failures_total{reason="invalid"} 0',
    'meshkey_sds_csr_total{result="success"} 0',
    'meshkey_sds_renewal_failures_total{reason="token_expired"} 0',
    'meshkey_xds_nacks_total{type="LDS"} 0',
    'meshkey_xds_pushes_total{type="CDS"} 0',
    'meshkey_xds_connections_closed_total{reason="idle"} 0',
    'meshkey_mesh_reloads_total{result="invalid"} 0',
  ]) {
    assert.ok(text.split("\n").includes(series), `missing ${series}`);
  }
});

test("meshkey_build_info names meshkey's version and the Node.js version", async () => {
  assert.match(await metrics(), `meshkey_build_info{version="${version}",node="${process.version}"} 1`);
});

test("the root expiry gauge reads the root's remaining life (about ten years for a new root)", async () => {
  const value = Number(/^meshkey_ca_root_expiry_seconds (\S+)$/m.exec(await metrics())?.[1]);
  assert.ok(value > 9 * 365 * 86400 && value <= 10 * 366 * 86400, String(value));
});

test("the push latency histogram (mesh change to ACK) is exported", async () => {
  assert.match(await metrics(), /^# TYPE meshkey_xds_push_latency_seconds histogram$/m);
});

test("a refused SDS token is logged with the claims it carried and the issuer, audience and JWKS expected", async () => {
  const tokenFile = join(dir, "wrong-audience");
  const minted = meshkey("token", "--namespace", "foo", "--service-account", "sleep", "--audience", "not-istio-ca", "--state-dir", join(dir, "a", "state"));
  assert.is(minted.status, 0, minted.stderr);
  writeFileSync(tokenFile, minted.stdout.trim());
  const fetched = meshkey("fetch-secret", "--token", tokenFile, "--socket", serve.sds!.replace(/^unix:/, ""));
  assert.is.not(fetched.status, 0);
  const rec = await logLine(serve, (r) => r.msg === "SDS call with an invalid token", "for the refused token");
  const presented = rec.presented as Record<string, unknown>;
  assert.is(presented.sub, "system:serviceaccount:foo:sleep");
  assert.equal([presented.aud].flat(), ["not-istio-ca"]);
  const expected = rec.expected as Record<string, unknown>;
  assert.is(expected.audience, "istio-ca");
  assert.type(expected.issuer, "string");
  assert.match(String(expected.keys), /^the dev issuer's .*jwks\.json \(1 key\)$/);
  assert.match(String(rec.peer), /SO_PEERCRED/);
  assert.not.match(JSON.stringify(rec), minted.stdout.trim(), "the token itself is not logged");
});

test("a proxy connecting and disconnecting is logged at info with its node id", async () => {
  const nodeId = "sidecar~127.100.0.9~sleep-0.foo~foo.svc.cluster.local";
  const client = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${serve.xds}` }));
  const input = createWritableIterable<MessageInitShape<typeof DiscoveryRequestSchema>>();
  const responses = client.streamAggregatedResources(input)[Symbol.asyncIterator]();
  await input.write({ node: { id: nodeId }, typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster" });
  await responses.next();
  const connected = await logLine(serve, (r) => r.node === nodeId && /proxy connected/.test(String(r.msg)), "for the connect");
  assert.is(connected.level, 30);
  input.close();
  while (!(await responses.next()).done);
  const gone = await logLine(serve, (r) => r.node === nodeId && /proxy disconnected/.test(String(r.msg)), "for the disconnect");
  assert.is(gone.level, 30);
});

test("--log-format text prints ISO time, level name, message and key=value fields", async () => {
  const text = await startServeProcess([...isolatedServeArgs(join(dir, "b")), "--log-level", "info", "--log-format", "text"]);
  started.push(text);
  const deadline = Date.now() + 10_000;
  while (!/SDS server listening/.test(text.stderr()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  const line = text.stderr().split("\n").find((l) => l.includes("SDS server listening"));
  assert.ok(line, text.stderr());
  assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO SDS server listening( \S+=\S+)* socket=\S+/);
  assert.not.match(text.stderr(), /^\{/m, "no JSON line");
});

test.run();
