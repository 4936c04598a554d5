// `meshkey demo`: the seeds' verification, runnable anywhere. One meshkey
// process (CA + SDS + ADS), four Node workloads that get their identities over
// SDS with the Node client, the four mTLS requests of Istio's SDS task, the
// "no secret file" check, a refused identity, and optionally a rotation under
// live traffic.
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pino, type Logger } from "pino";
import { spiffeIdOf } from "../spiffe/index.js";
import { createSdsClient, spiffeIdOfPeer, type SdsClient } from "../client/index.js";
import { resolveServeConfig } from "./serve-config.js";
import { startMeshkey, type RunningMeshkey } from "./meshkey-process.js";

export interface DemoOptions {
  /** Run traffic through at least two certificate rotations (short certificate TTL). */
  rotate: boolean;
  /** Certificate lifetime used with `rotate`, in seconds. */
  rotateTtlSeconds?: number;
  /** How long to keep traffic going with `rotate`, in ms. */
  rotateTrafficMs?: number;
  out: (line: string) => void;
  logLevel?: string;
}

interface Workload {
  name: string; // "sleep.foo"
  namespace: string;
  serviceAccount: string;
  dir: string;
  spiffeId: string;
  client: SdsClient;
}

interface HttpbinServer {
  workload: Workload;
  server: https.Server;
  port: number;
  serialsSeen: Set<string>;
}

const NAMESPACES = ["foo", "bar"] as const;

export async function runDemo(options: DemoOptions): Promise<number> {
  const out = options.out;
  const log = pino({ level: options.logLevel ?? "silent" }, pino.destination(2));
  const root = await mkdtemp(join(tmpdir(), "meshkey-demo-"));
  const ttl = options.rotateTtlSeconds ?? 8;
  const args = [
    "--state-dir", join(root, "state"),
    "--sds-socket", join(root, "sds", "uds_path"),
    "--xds-listen", "127.0.0.1:0",
    "--ca-listen", "127.0.0.1:0",
    "--admin-listen", "127.0.0.1:0",
    ...(options.rotate ? ["--cert-ttl", `${ttl}s`] : []),
  ];
  const config = resolveServeConfig(args);
  let meshkey: RunningMeshkey | undefined;
  const workloads: Workload[] = [];
  const servers: HttpbinServer[] = [];
  let failures = 0;
  try {
    meshkey = await startMeshkey(config, log);
    const socketPath = meshkey.addresses.sds!.replace(/^unix:/, "");
    const td = config.trustDomain;
    const sleepIds = NAMESPACES.map((ns) => spiffeIdOf(td, { namespace: ns, serviceAccount: "sleep" }));
    const httpbinIds = NAMESPACES.map((ns) => spiffeIdOf(td, { namespace: ns, serviceAccount: "httpbin" }));

    const start = async (app: string, ns: string, allowed: string[]) => {
      const w = await startWorkload(meshkey!, root, socketPath, app, ns, allowed, log);
      workloads.push(w);
      return w;
    };
    // httpbin accepts the sleeps; each sleep accepts only httpbin servers.
    for (const ns of NAMESPACES) servers.push(await startHttpbin(await start("httpbin", ns, sleepIds)));
    const sleeps = [];
    for (const ns of NAMESPACES) sleeps.push(await start("sleep", ns, httpbinIds));

    // The seeds' four requests.
    for (const from of sleeps) {
      for (const to of servers) {
        const r = await request(from.client, to.port).catch((err: Error) => ({ status: 0, error: err.message }));
        out(`${from.name} to ${to.workload.name}: ${r.status === 0 ? `failed (${(r as { error: string }).error})` : r.status}`);
        if (r.status !== 200) failures++;
      }
    }

    // What Istio's doc checks by hand: no secret file anywhere.
    out("");
    const keyFiles = await findPrivateKeyFiles(root);
    const expected = new Set(["state/root-key.pem", "state/dev-issuer-key.pem"]);
    const unexpected = keyFiles.filter((f) => !expected.has(f));
    out(`private keys on disk: ${keyFiles.length ? keyFiles.join(", ") : "none"} (the CA's root and the dev token issuer)`);
    if (unexpected.length) {
      failures++;
      out(`UNEXPECTED key files: ${unexpected.join(", ")}`);
    } else {
      out(`no workload key or certificate file: ${workloads.length} workloads hold theirs in memory only`);
    }

    // An identity that is not allowed gets a clear TLS failure.
    out("");
    const intruder = await start("intruder", "baz", httpbinIds);
    const refused = await request(intruder.client, servers[0]!.port).then(
      (r) => `unexpectedly answered ${r.status}`,
      (err: Error) => `refused by httpbin.foo (${err.message}: ${intruder.spiffeId} is not in its allow-list)`,
    );
    out(`${intruder.name} to httpbin.foo: ${refused}`);
    if (refused.startsWith("unexpectedly")) failures++;
    const impostor = await startHttpbin(intruder);
    servers.push(impostor);
    const rejected = await request(sleeps[0]!.client, impostor.port).then(
      (r) => `unexpectedly answered ${r.status}`,
      (err: Error) => `TLS failure: ${err.message}`,
    );
    out(`${sleeps[0]!.name} to ${intruder.name} posing as httpbin: ${rejected}`);
    if (rejected.startsWith("unexpectedly")) failures++;

    if (options.rotate) failures += await rotationUnderTraffic(sleeps, servers.slice(0, 2), ttl, options.rotateTrafficMs ?? 2 * ttl * 1000, out);
    out("");
    out(failures === 0 ? "demo passed" : `demo FAILED (${failures} problem${failures === 1 ? "" : "s"})`);
    out("(the same with real Envoy sidecars: meshkey demo --envoy [--rotate])");
    return failures === 0 ? 0 : 1;
  } finally {
    for (const s of servers) s.server.close();
    await Promise.allSettled(workloads.map((w) => w.client.close()));
    await meshkey?.close();
    await rm(root, { recursive: true, force: true });
  }
}

async function startWorkload(
  meshkey: RunningMeshkey,
  root: string,
  socketPath: string,
  app: string,
  namespace: string,
  allowedPeerIds: string[],
  log: Logger,
): Promise<Workload> {
  const dir = join(root, "workloads", `${app}.${namespace}`);
  await mkdir(dir, { recursive: true });
  const tokenPath = join(dir, "istio-token");
  const token = await meshkey.devIssuer!.mint({ namespace, serviceAccount: app, ttlSeconds: 3600 });
  await writeFile(tokenPath, token, { mode: 0o600 });
  const client = createSdsClient({
    socketPath,
    tokenPath,
    allowedPeerIds,
    nodeId: `sidecar~127.0.0.1~${app}-1.${namespace}~${namespace}.svc.cluster.local`,
    logger: log.child({ workload: `${app}.${namespace}` }),
  });
  const material = await client.ready(15_000);
  return { name: `${app}.${namespace}`, namespace, serviceAccount: app, dir, spiffeId: material.spiffeId, client };
}

async function startHttpbin(workload: Workload): Promise<HttpbinServer> {
  const serialsSeen = new Set<string>();
  const server = https.createServer(workload.client.serverOptions(), (req, res) => {
    const peer = spiffeIdOfPeer((req.socket as import("node:tls").TLSSocket).getPeerCertificate());
    const serial = workload.client.current()?.serialNumber;
    if (serial) serialsSeen.add(serial);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ origin: req.socket.remoteAddress, peer }));
  });
  workload.client.attachServer(server);
  server.keepAliveTimeout = 1;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { workload, server, port: (server.address() as AddressInfo).port, serialsSeen };
}

function request(client: SdsClient, port: number): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port, path: "/ip", method: "GET", agent: false, timeout: 5_000, ...client.connectOptions() },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (err: NodeJS.ErrnoException) => reject(new Error(err.code ? `${err.code}: ${err.message}` : err.message)));
    req.end();
  });
}

async function rotationUnderTraffic(
  sleeps: Workload[],
  servers: HttpbinServer[],
  ttlSeconds: number,
  durationMs: number,
  out: (line: string) => void,
): Promise<number> {
  out("");
  out(`rotation under traffic: certificates live ${ttlSeconds}s and renew at half-life; sending requests for ${Math.round(durationMs / 1000)}s`);
  const before = new Map(servers.map((s) => [s.workload.name, s.workload.client.current()!.serialNumber]));
  const clientSerials = new Map(sleeps.map((w) => [w.name, new Set([w.client.current()!.serialNumber])]));
  for (const w of sleeps) w.client.onUpdate((m) => clientSerials.get(w.name)!.add(m.serialNumber));
  for (const s of servers) s.serialsSeen.clear();
  const deadline = Date.now() + durationMs;
  let sent = 0;
  let failed = 0;
  const maxRequests = 20_000; // bounded in count as well as time
  await Promise.all(
    sleeps.flatMap((from) =>
      servers.map(async (to) => {
        while (Date.now() < deadline && sent < maxRequests) {
          sent++;
          const r = await request(from.client, to.port).catch(() => ({ status: 0 }));
          if (r.status !== 200) failed++;
          await new Promise((res) => setTimeout(res, 20));
        }
      }),
    ),
  );
  let problems = failed > 0 ? 1 : 0;
  for (const s of servers) {
    const serials = [...s.serialsSeen];
    const rotated = serials.some((x) => x !== before.get(s.workload.name));
    out(`  ${s.workload.name}: served with ${serials.length} certificate(s) ${rotated ? "(rotated without restart)" : "(NOT rotated)"}`);
    if (!rotated) problems++;
  }
  for (const [name, serials] of clientSerials) out(`  ${name}: used ${serials.size} client certificate(s)`);
  out(`  ${sent} requests, ${failed} failed`);
  return problems;
}

/** Paths (relative to root) of files that hold a PEM private key. */
async function findPrivateKeyFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(dir: string): Promise<void> {
    for (const name of await readdir(dir)) {
      const p = join(dir, name);
      const st = await stat(p).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) await walk(p);
      else if (st.isFile() && st.size < 1_000_000 && (await readFile(p, "utf8")).includes("PRIVATE KEY")) {
        found.push(relative(root, p));
      }
    }
  }
  await walk(root);
  return found.sort();
}
