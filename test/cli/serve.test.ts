// `meshkey serve` as a user runs it: ready quickly, readiness over HTTP, restart
// keeps the root, SIGTERM closes streams and removes the socket, split roles.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDevTokenIssuer } from "../../src/ca/index.js";
import { createSdsClient } from "../../src/client/index.js";
import { startServeProcess, isolatedServeArgs } from "../support/serve-process.js";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "meshkey-serve-"));
  dirs.push(d);
  return d;
}
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test("a fresh state dir reaches /readyz 200 within 10 s, with every part listening", async () => {
  const dir = tempDir();
  const serve = await startServeProcess(isolatedServeArgs(dir));
  try {
    const r = await fetch(`http://${serve.admin}/readyz`);
    assert.is(r.status, 200);
    const body = (await r.json()) as { checks: Record<string, boolean> };
    assert.equal(body.checks, { ca: true, caServer: true, sds: true, meshParsed: true, xds: true, tokenVerifier: true });
    assert.ok(serve.startupMs < 10_000, `ready after ${serve.startupMs} ms`);
    assert.ok(serve.sds && serve.xds && serve.ca, serve.stdout());
    // The printed commands work as printed: a token, then a bootstrap that validates.
    // Async, so that this process's event loop (and its HTTP keep-alive state) keeps running.
    const { exec } = await import("node:child_process");
    const { promisify } = await import("node:util");
    const execAsync = promisify(exec);
    const printed = serve.stdout().split("Point an Envoy at it:\n")[1]!.replace(/\\\n\s*/g, "").split("\n").map((l) => l.trim());
    const run = async (line: string) =>
      (await execAsync(line.replace(/^npx meshkey /, `${process.execPath} bin/meshkey.js `), { cwd: process.cwd(), encoding: "utf8", env: { ...process.env, PWD: dir } })).stdout;
    const tokenLine = printed.find((l) => l.startsWith("npx meshkey token"))!;
    writeFileSync(join(dir, "istio-token"), await run(tokenLine.replace(/ > istio-token$/, "")));
    const bootstrapLine = printed.find((l) => l.startsWith("npx meshkey bootstrap"))!.replace("-o envoy.json", `-o ${join(dir, "envoy.json")}`).replace('"$PWD/istio-token"', join(dir, "istio-token"));
    await run(bootstrapLine);
    await run(`npx meshkey validate ${join(dir, "envoy.json")}`);
    assert.match(readFileSync(join(dir, "envoy.json"), "utf8"), new RegExp(serve.xds!.split(":")[1]!));
    assert.is((await fetch(`http://${serve.admin}/healthz`)).status, 200);
    assert.match(await (await fetch(`http://${serve.admin}/metrics`)).text(), /meshkey_process_/);
  } finally {
    await serve.stop();
  }
});

test("a restart with the same state dir keeps the root", async () => {
  const dir = tempDir();
  const first = await startServeProcess(isolatedServeArgs(dir));
  const before = first.rootFingerprint;
  await first.stop();
  const second = await startServeProcess(isolatedServeArgs(dir));
  try {
    assert.ok(before);
    assert.is(second.rootFingerprint, before);
  } finally {
    await second.stop();
  }
});

test("SIGTERM with an open SDS stream exits 0 within 10 s and leaves no socket", async () => {
  const dir = tempDir();
  const serve = await startServeProcess(isolatedServeArgs(dir));
  const socketPath = serve.sds!.replace(/^unix:/, "");
  const issuer = await openDevTokenIssuer(join(dir, "state"));
  const tokenPath = join(dir, "token");
  writeFileSync(tokenPath, await issuer.mint({ namespace: "foo", serviceAccount: "sleep" }));
  const client = createSdsClient({ socketPath, tokenPath, backoff: { initialMs: 50, maxMs: 200 } });
  try {
    await client.ready(10_000);
    assert.ok(existsSync(socketPath));
    const r = await serve.stop("SIGTERM");
    assert.is(r.code, 0, serve.stderr());
    assert.ok(r.ms < 10_000, `exit took ${r.ms} ms`);
    assert.not.ok(existsSync(socketPath), "socket left behind");
  } finally {
    await client.close();
    await serve.stop();
  }
});

test("split roles: an agent with --ca-provider istio gets working certificates from a CA-only meshkey", async () => {
  const caDir = tempDir();
  const agentDir = tempDir();
  const caOnly = await startServeProcess([...isolatedServeArgs(caDir), "--no-sds", "--no-xds"]);
  let agent: Awaited<ReturnType<typeof startServeProcess>> | undefined;
  const tokenPath = join(agentDir, "token");
  const issuer = await openDevTokenIssuer(join(caDir, "state"));
  writeFileSync(tokenPath, await issuer.mint({ namespace: "bar", serviceAccount: "httpbin" }));
  const client = { c: undefined as ReturnType<typeof createSdsClient> | undefined };
  try {
    assert.ok(caOnly.ca);
    assert.not.ok(caOnly.sds);
    agent = await startServeProcess([
      ...isolatedServeArgs(agentDir),
      "--no-ca", "--no-xds",
      "--ca-provider", "istio",
      "--ca-address", caOnly.ca!,
      "--ca-root-cert", join(caDir, "state", "root-cert.pem"),
      "--jwks", join(caDir, "state", "jwks.json"),
    ]);
    assert.not.ok(existsSync(join(agentDir, "state", "root-key.pem")), "the agent must not mint a root of its own");
    client.c = createSdsClient({ socketPath: agent.sds!.replace(/^unix:/, ""), tokenPath });
    const material = await client.c.ready(15_000);
    assert.is(material.spiffeId, "spiffe://cluster.local/ns/bar/sa/httpbin");
    const root = new X509Certificate(readFileSync(join(caDir, "state", "root-cert.pem")));
    const chain = material.certChainPem.split(/(?<=-----END CERTIFICATE-----)\s*/).filter(Boolean).map((p) => new X509Certificate(p));
    // Leaf first; each certificate is signed by the next, the last by the CA-only process's root.
    for (let i = 0; i < chain.length; i++) {
      const issuer = chain[i + 1] ?? root;
      assert.ok(chain[i]!.checkIssued(issuer) && chain[i]!.verify(issuer.publicKey), `chain[${i}] is not issued by ${issuer.subject || "the root"}`);
    }
    assert.is(material.trustedCaPem.trim(), readFileSync(join(caDir, "state", "root-cert.pem"), "utf8").trim());
  } finally {
    await client.c?.close();
    await agent?.stop();
    await caOnly.stop();
  }
});

test("debug pages show what a connected sidecar was sent and what the agent holds", async () => {
  const { createClient } = await import("@connectrpc/connect");
  const { createGrpcTransport } = await import("@connectrpc/connect-node");
  const { createWritableIterable } = await import("@connectrpc/connect/protocol");
  const { AggregatedDiscoveryService } = await import("../../gen/envoy/service/discovery/v3/ads_pb.js");
  const dir = tempDir();
  const serve = await startServeProcess(isolatedServeArgs(dir));
  const nodeId = "sidecar~127.0.0.1~sleep-1.foo~foo.svc.cluster.local";
  const ads = createClient(AggregatedDiscoveryService, createGrpcTransport({ baseUrl: `http://${serve.xds}` }));
  const requests = createWritableIterable<{ node: { id: string }; typeUrl: string; versionInfo?: string; responseNonce?: string }>();
  const abort = new AbortController();
  const issuer = await openDevTokenIssuer(join(dir, "state"));
  const tokenPath = join(dir, "token");
  writeFileSync(tokenPath, await issuer.mint({ namespace: "foo", serviceAccount: "sleep" }));
  const sds = createSdsClient({ socketPath: serve.sds!.replace(/^unix:/, ""), tokenPath });
  try {
    const cdsType = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    void requests.write({ node: { id: nodeId }, typeUrl: cdsType }).catch(() => {});
    const stream = ads.streamAggregatedResources(requests, { signal: abort.signal })[Symbol.asyncIterator]();
    const first = await stream.next();
    assert.ok(!first.done && first.value.resources.length > 0, "no clusters pushed");
    void requests.write({ node: { id: nodeId }, typeUrl: cdsType, versionInfo: first.value!.versionInfo, responseNonce: first.value!.nonce }).catch(() => {});
    await sds.ready(10_000);

    const dump = (await (await fetch(`http://${serve.admin}/debug/config_dump?node=${encodeURIComponent(nodeId)}`)).json()) as Record<string, unknown>;
    assert.match(JSON.stringify(dump), /outbound\|8000\|\|httpbin\.foo\.svc\.cluster\.local/);
    const unknownNode = await fetch(`http://${serve.admin}/debug/config_dump?node=nobody`);
    assert.is(unknownNode.status, 404);

    let syncz = "";
    for (let i = 0; i < 50 && !syncz.includes(first.value!.versionInfo); i++) {
      syncz = await (await fetch(`http://${serve.admin}/debug/syncz`)).text();
      if (!syncz.includes(nodeId)) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(syncz.includes(nodeId), syncz);

    const sdsDebug = await (await fetch(`http://${serve.admin}/debug/sds`)).text();
    assert.ok(sdsDebug.includes("spiffe://cluster.local/ns/foo/sa/sleep"), sdsDebug);
    assert.not.match(sdsDebug, /PRIVATE KEY/);
  } finally {
    abort.abort();
    requests.close();
    await sds.close();
    await serve.stop();
  }
});

test("bad flags exit 2 naming the flag; an unusable state dir exits 1 naming it", async () => {
  const { spawnSync } = await import("node:child_process");
  const bad = spawnSync(process.execPath, ["bin/meshkey.js", "serve", "--key-type", "dsa"], { encoding: "utf8" });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /--key-type: must be one of ec-p256, rsa-2048/);
  const dir = tempDir();
  const file = join(dir, "not-a-dir");
  writeFileSync(file, "x");
  const r = spawnSync(process.execPath, ["bin/meshkey.js", "serve", ...isolatedServeArgs(dir).slice(2), "--state-dir", file], {
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /state dir .*not-a-dir/);
});

test.run();
