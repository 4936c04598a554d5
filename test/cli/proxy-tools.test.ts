// The operator verbs against a running `meshkey serve` child, with real connect-es
// ADS clients playing a sidecar (ACKs everything), a proxyless gRPC client (NACKs
// LDS) and a slow proxy (never ACKs LDS), and a Node SDS client holding a stream.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import type { DiscoveryRequestSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { openDevTokenIssuer } from "../../src/ca/index.js";
import { createSdsClient, type SdsClient } from "../../src/client/index.js";
import { TypeUrl } from "../../src/xds/index.js";
import { isolatedServeArgs, startServeProcess, type ServeProcess } from "../support/serve-process.js";

const SIDECAR = "sidecar~127.80.0.2~sleep-1.foo~foo.svc.cluster.local";
const PROXYLESS = "grpc-client~127.80.0.3~web-1.foo";
const SLOW = "sidecar~127.80.0.4~httpbin-1.bar~bar.svc.cluster.local";
// A node id a hostile client chose: an ANSI colour and a terminal-title escape.
const HOSTILE = "sidecar~127.80.0.5~\u001b[31mevil-1.foo\u001b]0;pwned\u0007~foo.svc.cluster.local";
const NACK_MESSAGE = "listener refused: \u001b[2Jbad bind address 127.80.0.3:8000";
const ADS_TYPES = [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route];

let dir: string;
let serve: ServeProcess;
let tokenFile: string;
let sds: SdsClient;
const proxies: Array<{ close(): Promise<void> }> = [];

interface Cli {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI without blocking this process (its ADS clients must keep answering). */
function cli(args: string[]): Promise<Cli> {
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

const addrs = () => ["--xds", serve.xds!, "--admin", serve.admin];

/** Polls until `check` gives a value (bounded). */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

type Behaviour = "ack" | "ignore" | { nack: string };

/** An ADS client: subscribes to every type (wildcard) and ACKs, ignores or NACKs each response. */
function connectProxy(nodeId: string, metadata: Record<string, string>, behave: (typeUrl: string) => Behaviour) {
  type Req = MessageInitShape<typeof DiscoveryRequestSchema>;
  const requests = createWritableIterable<Req>();
  const abort = new AbortController();
  const client = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${serve.xds}` }));
  const node = { id: nodeId, metadata };
  const acked = new Map<string, string>();
  const send = (r: Req) => void requests.write(r).catch(() => {});
  for (const typeUrl of ADS_TYPES) send({ node, typeUrl, resourceNames: [] });
  const loop = (async () => {
    for await (const res of client.streamAggregatedResources(requests, { signal: abort.signal })) {
      const b = behave(res.typeUrl);
      if (b === "ignore") continue;
      if (b === "ack") {
        acked.set(res.typeUrl, res.versionInfo);
        send({ node, typeUrl: res.typeUrl, versionInfo: res.versionInfo, responseNonce: res.nonce, resourceNames: [] });
      } else {
        send({ node, typeUrl: res.typeUrl, versionInfo: acked.get(res.typeUrl) ?? "", responseNonce: res.nonce, resourceNames: [], errorDetail: { code: 3, message: b.nack } });
      }
    }
  })().catch(() => {});
  const proxy = {
    async close() {
      abort.abort();
      requests.close();
      await loop;
    },
  };
  proxies.push(proxy);
  return proxy;
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshkey-proxy-tools-"));
  serve = await startServeProcess(isolatedServeArgs(dir));
  const issuer = await openDevTokenIssuer(join(dir, "state"));
  tokenFile = join(dir, "sleep-token");
  writeFileSync(tokenFile, await issuer.mint({ namespace: "foo", serviceAccount: "sleep", ttlSeconds: 3600 }));
  // The sidecar's SDS stream, as its Envoy would hold it.
  sds = createSdsClient({ socketPath: serve.sds!.replace(/^unix:/, ""), tokenPath: tokenFile });
  await sds.ready();
  connectProxy(SIDECAR, { NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep" }, () => "ack");
  connectProxy(PROXYLESS, { GENERATOR: "grpc", NAMESPACE: "foo" }, (t) => (t === TypeUrl.Listener ? { nack: NACK_MESSAGE } : "ack"));
  connectProxy(SLOW, { NAMESPACE: "bar", SERVICE_ACCOUNT: "httpbin" }, (t) => (t === TypeUrl.Listener ? "ignore" : "ack"));
  connectProxy(HOSTILE, { NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep" }, () => ({ nack: NACK_MESSAGE }));
  await waitFor("every proxy, and the NACKs, in proxy-status", async () => {
    const r = await cli(["proxy-status", ...addrs()]);
    const listed = [SIDECAR, PROXYLESS, SLOW, "sidecar~127.80.0.5~"].every((id) => lineOf(r.stdout, id) !== "");
    return listed && r.stdout.includes(`${PROXYLESS} LDS NACKED`) && / STALE \(/.test(r.stdout) ? r : undefined;
  });
});

test.after(async () => {
  for (const p of proxies) await p.close();
  await sds?.close();
  await serve?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** One `proxy-status` run after setup, shared by the tests that read the overview. */
let overview: Promise<Cli> | undefined;
const proxyStatus = () => (overview ??= cli(["proxy-status", ...addrs()]));

const lineOf = (out: string, nodeStart: string) => out.split("\n").find((l) => l.startsWith(nodeStart)) ?? "";

test("proxy-status shows a sidecar that ACKed everything as SYNCED for CDS, LDS, EDS, RDS and SDS", async () => {
  const r = await proxyStatus();
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^NAME\s+KIND\s+CDS\s+LDS\s+EDS\s+RDS\s+SDS$/m);
  const cells = lineOf(r.stdout, SIDECAR).split(/\s{3,}/);
  assert.equal(cells, [SIDECAR, "sidecar", "SYNCED", "SYNCED", "SYNCED", "SYNCED", "SYNCED"], r.stdout);
});

test("proxy-status shows a proxyless client as proxyless and its NACK with the client's message", async () => {
  const r = await proxyStatus();
  const cells = lineOf(r.stdout, PROXYLESS).split(/\s{3,}/);
  assert.is(cells[1], "proxyless");
  assert.is(cells[3], "NACKED", r.stdout);
  assert.is(cells[6], "-", "no SDS for a proxyless client");
  assert.match(lineOf(r.stdout, `${PROXYLESS} LDS NACKED`), "bad bind address 127.80.0.3:8000");
});

test("proxy-status shows a type sent and not ACKed as STALE with how long it has waited", async () => {
  const r = await proxyStatus();
  const cells = lineOf(r.stdout, SLOW).split(/\s{3,}/);
  assert.match(cells[3]!, /^STALE \(\d+s\)$/, r.stdout);
  assert.is(cells[2], "SYNCED");
});

test("node ids and NACK messages from clients reach the terminal escaped, never as control characters", async () => {
  const r = await proxyStatus();
  assert.not.match(r.stdout, /[\u0000-\u0008\u000b-\u001f\u007f]/);
  assert.match(r.stdout, "sidecar~127.80.0.5~\\x1b[31mevil-1.foo\\x1b]0;pwned\\x07~foo.svc.cluster.local");
  assert.match(r.stdout, "listener refused: \\x1b[2Jbad bind address");
});

test("proxy-status NODE compares what meshkey sent with what the node ACKed, and exits 1 when they differ", async () => {
  const synced = await cli(["proxy-status", SIDECAR, ...addrs()]);
  assert.is(synced.status, 0, synced.stdout + synced.stderr);
  assert.match(synced.stdout, /^LDS match: the proxy ACKed what meshkey sent/m);
  const nacked = await cli(["proxy-status", PROXYLESS, ...addrs()]);
  assert.is(nacked.status, 1);
  assert.match(nacked.stdout, /^LDS\s+NACKED\s+\S+\s+-\s+\d+$/m);
  assert.match(nacked.stdout, /^LDS differ: meshkey sent, the proxy has not ACKed/m);
  assert.match(nacked.stdout, "  Envoy's message: listener refused:");
  assert.match(nacked.stdout, /^  \+ httpbin\.foo\.svc\.cluster\.local:8000$/m);
});

test("proxy-status -o json prints meshkey's CSDS answer with each node's metadata", async () => {
  const r = await cli(["proxy-status", SIDECAR, "-o", "json", ...addrs()]);
  const json = JSON.parse(r.stdout) as { config: Array<{ node: { id: string; metadata: Record<string, string> }; genericXdsConfigs: Array<{ configStatus: string }> }> };
  assert.is(json.config.length, 1);
  assert.is(json.config[0]!.node.metadata.SERVICE_ACCOUNT, "sleep");
  assert.ok(json.config[0]!.genericXdsConfigs.every((g) => g.configStatus === "SYNCED"));
});

test("proxy-config cluster lists the sidecar's clusters by FQDN, port and direction, with the SAN they require", async () => {
  const r = await cli(["proxy-config", "cluster", SIDECAR, ...addrs()]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^SERVICE FQDN\s+PORT\s+SUBSET\s+DIRECTION\s+TYPE\s+TLS \(PEER SAN\)$/m);
  assert.match(r.stdout, /^httpbin\.bar\.svc\.cluster\.local\s+8000\s+-\s+outbound\s+EDS\s+spiffe:\/\/cluster\.local\/ns\/bar\/sa\/httpbin$/m);
});

test("proxy-config -o json prints Envoy-native resources", async () => {
  const r = await cli(["proxy-config", "listener", SIDECAR, "-o", "json", ...addrs()]);
  const listeners = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  assert.ok(listeners.length > 0);
  for (const l of listeners) assert.is(l["@type"], "type.googleapis.com/envoy.config.listener.v3.Listener");
  assert.ok(listeners.some((l) => "filter_chains" in l), "proto field names, as Envoy prints them");
});

test("proxy-config route and endpoint show virtual hosts and endpoint addresses", async () => {
  const routes = await cli(["proxy-config", "route", SIDECAR, ...addrs()]);
  assert.match(routes.stdout, /^8000\s+\S+\s+httpbin\.foo\.svc\.cluster\.local/m);
  const eps = await cli(["proxy-config", "endpoint", SIDECAR, ...addrs()]);
  assert.match(eps.stdout, /^ENDPOINT\s+STATUS\s+LOCALITY\s+WEIGHT\s+CLUSTER$/m);
  assert.match(eps.stdout, /outbound\|8000\|\|httpbin\.foo\.svc\.cluster\.local$/m);
});

test("proxy-config secret shows the SAN, serial and validity fetch-secret sees, and the root fingerprint as openssl prints it", async () => {
  const r = await cli(["proxy-config", "secret", SIDECAR, ...addrs()]);
  assert.is(r.status, 0, r.stderr);
  const fetched = await cli(["fetch-secret", "--token", tokenFile, "--socket", serve.sds!.replace(/^unix:/, "")]);
  const serial = /^serial:\s+(\S+)/m.exec(fetched.stdout)![1]!.toLowerCase().replace(/^(00)+/, "");
  const row = lineOf(r.stdout, "default").split(/\s{3,}/);
  assert.equal(row.slice(0, 5), ["default", "Cert Chain", "ACTIVE", "spiffe://cluster.local/ns/foo/sa/sleep", serial], r.stdout);
  const out = join(dir, "pems-for-openssl");
  await cli(["fetch-secret", "--token", tokenFile, "--socket", serve.sds!.replace(/^unix:/, ""), "-o", out]);
  const openssl = spawnSync("openssl", ["x509", "-in", join(out, "root-cert.pem"), "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" });
  const fingerprint = openssl.stdout.trim().split("=")[1]!;
  assert.match(r.stdout, `ROOTCA SHA256 Fingerprint=${fingerprint}`);
  assert.not.match(r.stdout, /PRIVATE KEY/);
});

test("fetch-secret prints the token's SPIFFE ID and checks the chain against ROOTCA", async () => {
  const r = await cli(["fetch-secret", "--token", tokenFile, "--socket", serve.sds!.replace(/^unix:/, "")]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^SPIFFE ID:\s+spiffe:\/\/cluster\.local\/ns\/foo\/sa\/sleep$/m);
  assert.match(r.stdout, /^chain:\s+\d certificate\(s\), verifies against ROOTCA$/m);
  assert.match(r.stdout, /^not after:\s+\S+ \(expires in /m);
  assert.not.match(r.stdout + r.stderr, /PRIVATE KEY/);
});

test("fetch-secret -o DIR writes the PEMs with mode 0600 and warns on stderr that the key is on disk", async () => {
  const out = join(dir, "pems");
  const r = await cli(["fetch-secret", "--token", tokenFile, "--socket", serve.sds!.replace(/^unix:/, ""), "-o", out]);
  assert.is(r.status, 0, r.stderr);
  for (const f of ["cert-chain.pem", "key.pem", "root-cert.pem"]) assert.is(statSync(join(out, f)).mode & 0o777, 0o600, f);
  assert.match(readFileSync(join(out, "key.pem"), "utf8"), "PRIVATE KEY");
  assert.match(r.stderr, /WARNING: wrote the workload's PRIVATE KEY to .*key\.pem/);
  assert.not.match(r.stdout, /PRIVATE KEY/);
});

test("fetch-secret with a token the agent refuses exits 1 and says so", async () => {
  const bad = join(dir, "bad-token");
  writeFileSync(bad, "not-a-jwt");
  const r = await cli(["fetch-secret", "--token", bad, "--socket", serve.sds!.replace(/^unix:/, "")]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /refused the token \(Unauthenticated\)/);
});

test("healthcheck exits 0 when meshkey is ready and 1 when nothing answers", async () => {
  const ok = await cli(["healthcheck", "--admin", serve.admin]);
  assert.is(ok.status, 0, ok.stderr);
  const down = await cli(["healthcheck", "--admin", "127.0.0.1:9"]);
  assert.is(down.status, 1);
  assert.match(down.stderr, "127.0.0.1:9 (--admin ADDR)");
});

test("an unreachable meshkey is an error that names the address and the flag (exit 1)", async () => {
  const [status, config, socket, envoy] = await Promise.all([
    cli(["proxy-status", "--xds", "127.0.0.1:9", "--admin", serve.admin]),
    cli(["proxy-config", "cluster", SIDECAR, "--xds", "127.0.0.1:9"]),
    cli(["fetch-secret", "--token", tokenFile, "--socket", join(dir, "no-socket")]),
    cli(["proxy-config", "cluster", "--envoy", "http://127.0.0.1:9"]),
  ]);
  assert.is(status.status, 1);
  assert.match(status.stderr, "CSDS at 127.0.0.1:9 (--xds ADDR)");
  assert.is(config.status, 1);
  assert.match(config.stderr, "127.0.0.1:9 (--xds ADDR)");
  assert.is(socket.status, 1);
  assert.match(socket.stderr, "(--socket PATH)");
  assert.is(envoy.status, 1);
  assert.match(envoy.stderr, "http://127.0.0.1:9 (--envoy URL)");
});

test("usage errors exit 2 and name the flag", async () => {
  const cases = [
    [["proxy-config", "clusterz", SIDECAR], '"clusterz" is not one of'],
    [["proxy-config", "cluster"], "needs a NODE"],
    [["proxy-status", "--xds", "nope"], "--xds"],
    [["proxy-status", "-o", "yaml"], "-o/--output"],
    [["healthcheck", "--admin", "x"], "--admin"],
    [["fetch-secret"], "--token"],
    [["proxy-config", "cluster", "--envoy", "not a url"], "--envoy"],
  ] as const;
  const results = await Promise.all(cases.map(([args]) => cli([...args])));
  for (const [i, [args, says]] of cases.entries()) {
    assert.is(results[i]!.status, 2, `${args.join(" ")}: ${results[i]!.stderr}`);
    assert.match(results[i]!.stderr, says);
  }
});

test("every operator verb has --help with an example", async () => {
  const verbs = ["proxy-status", "proxy-config", "fetch-secret", "healthcheck"];
  const results = await Promise.all(verbs.map((verb) => cli([verb, "--help"])));
  for (const [i, verb] of verbs.entries()) {
    assert.is(results[i]!.status, 0, verb);
    assert.match(results[i]!.stdout, /Examples?:\n  meshkey /, verb);
  }
});

test.run();
