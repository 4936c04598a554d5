// The Node SDS client against the real node agent over its Unix socket: it gets a
// usable identity, follows rotation with no restart, survives an agent restart,
// and enforces the SPIFFE allow-list in real TLS handshakes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as tls from "node:tls";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { createSdsClient, type SdsClient } from "../../src/client/index.js";
import { resolveServeConfig } from "../../src/cli/serve-config.js";
import { startMeshkey, type RunningMeshkey } from "../../src/cli/meshkey-process.js";

const silent = pino({ level: "silent" });
const dirs: string[] = [];
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function agent(dir: string, extra: string[] = []): Promise<RunningMeshkey> {
  const config = resolveServeConfig([
    "--state-dir", join(dir, "state"),
    "--sds-socket", join(dir, "uds_path"),
    "--ca-listen", "127.0.0.1:0",
    "--admin-listen", "127.0.0.1:0",
    "--no-xds",
    ...extra,
  ]);
  return startMeshkey(config, silent);
}

async function workload(m: RunningMeshkey, dir: string, ns: string, sa: string, allowed?: string[]): Promise<SdsClient> {
  const tokenPath = join(dir, `${ns}.${sa}.token`);
  writeFileSync(tokenPath, await m.devIssuer!.mint({ namespace: ns, serviceAccount: sa }));
  return createSdsClient({
    socketPath: join(dir, "uds_path"),
    tokenPath,
    ...(allowed ? { allowedPeerIds: allowed } : {}),
    backoff: { initialMs: 50, maxMs: 300 },
  });
}

function tempDir() {
  const d = mkdtempSync(join(tmpdir(), "meshkey-client-"));
  dirs.push(d);
  return d;
}

test("ready() yields the workload's SPIFFE identity, key and ROOTCA, in memory", async () => {
  const dir = tempDir();
  const m = await agent(dir);
  const c = await workload(m, dir, "foo", "sleep");
  try {
    const material = await c.ready(10_000);
    assert.is(material.spiffeId, "spiffe://cluster.local/ns/foo/sa/sleep");
    assert.match(material.privateKeyPem, /PRIVATE KEY/);
    assert.is(material.trustedCaPem.trim(), m.rootCertPem!.trim());
    assert.ok(material.notAfter.getTime() > Date.now());
  } finally {
    await c.close();
    await m.close();
  }
});

test("a rotation on the agent reaches the client with no reconnect and a new serial", async () => {
  const dir = tempDir();
  const m = await agent(dir, ["--cert-ttl", "4s"]);
  const c = await workload(m, dir, "foo", "sleep");
  try {
    const first = await c.ready(10_000);
    const next = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no rotation within 6 s")), 6_000);
      c.onUpdate((mat) => {
        if (mat.serialNumber !== first.serialNumber) {
          clearTimeout(t);
          resolve(mat.serialNumber);
        }
      });
    });
    assert.is.not(next, first.serialNumber);
  } finally {
    await c.close();
    await m.close();
  }
});

test("the client keeps its last good context while the agent is down, then reconnects", async () => {
  const dir = tempDir();
  let m = await agent(dir);
  const c = await workload(m, dir, "bar", "httpbin");
  try {
    const before = await c.ready(10_000);
    await m.close();
    await new Promise((r) => setTimeout(r, 400));
    assert.is(c.current()?.serialNumber, before.serialNumber, "last good certificate kept");
    assert.ok(c.secureContext());
    const updated = new Promise<string>((resolve) =>
      c.onUpdate((mat) => {
        if (mat.serialNumber !== before.serialNumber) resolve(mat.serialNumber);
      }),
    );
    m = await agent(dir); // same state dir: same root, new agent, new key
    const serial = await Promise.race([
      updated,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no reconnect within 8 s")), 8_000)),
    ]);
    assert.is.not(serial, before.serialNumber);
  } finally {
    await c.close();
    await m.close();
  }
});

test("mutual TLS between two clients succeeds for allowed IDs and fails clearly otherwise", async () => {
  const dir = tempDir();
  const m = await agent(dir);
  const serverSide = await workload(m, dir, "foo", "httpbin", ["spiffe://cluster.local/ns/foo/sa/sleep"]);
  const allowed = await workload(m, dir, "foo", "sleep", ["spiffe://cluster.local/ns/foo/sa/httpbin"]);
  const picky = await workload(m, dir, "bar", "sleep", ["spiffe://cluster.local/ns/bar/sa/httpbin"]);
  await Promise.all([serverSide.ready(), allowed.ready(), picky.ready()]);
  const server = tls.createServer(serverSide.serverOptions(), (s) => s.end("hello\n"));
  serverSide.attachServer(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const connect = (c: SdsClient) =>
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, ...c.connectOptions() }, () => {
        let data = "";
        s.on("data", (d) => (data += d));
        s.on("end", () => resolve(data));
      });
      s.on("error", reject);
    });
  try {
    assert.is(await connect(allowed), "hello\n");
    try {
      await connect(picky);
      assert.unreachable("a client must refuse a server whose SPIFFE ID it does not allow");
    } catch (err) {
      assert.match((err as Error).message, /server identity spiffe:\/\/cluster.local\/ns\/foo\/sa\/httpbin is not allowed/);
    }
  } finally {
    server.close();
    await Promise.all([serverSide.close(), allowed.close(), picky.close()]);
    await m.close();
  }
});

test.run();
