// `meshkey demo --envoy`: the seeds' verification with real Envoy sidecars. One
// meshkey (CA + SDS + ADS) in this process on free ports and a temp state dir and
// socket; sleep and httpbin in foo and bar (the built-in sample mesh's names, pod
// IPs and service ports, with free workload ports), each a small Node app on
// 127.0.0.1:<workload port> with an Envoy sidecar bootstrapped by the code of
// `meshkey bootstrap` and fed by ADS + SDS (file-based JWT call credentials).
// A request goes sleep's app → its sidecar's outbound listener → mTLS → the peer
// sidecar's inbound listener → httpbin's app. Every wait is on a condition read
// from Envoy's admin (/ready, /stats, /listeners, /certs), bounded in time.
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pino } from "pino";
import { stringify as toYaml } from "yaml";
import { renderBootstrap } from "../bootstrap/index.js";
import { openDevTokenIssuer } from "../ca/index.js";
import { spiffeIdOf } from "../spiffe/index.js";
import { defaultMesh, type MeshService } from "../mesh/index.js";
import { resolveServeConfig } from "./serve-config.js";
import { startMeshkey, type RunningMeshkey } from "./meshkey-process.js";
import {
  ENVOY_INSTALL_HINT,
  envoyVersion,
  findEnvoyBinary,
  freePort,
  leafCertificates,
  startDemoEnvoy,
  type DemoEnvoy,
} from "./demo-envoy-process.js";

export interface EnvoyDemoOptions {
  /** Rotate certificates under traffic (short certificate TTL). */
  rotate: boolean;
  /** Certificate lifetime with `rotate`, in seconds (renewed at half-life). */
  rotateTtlSeconds?: number;
  /** Rotations every sidecar must go through with `rotate`. */
  rotations?: number;
  out: (line: string) => void;
  err: (line: string) => void;
  /** meshkey's own log level (JSON lines on stderr; default silent). */
  logLevel?: string;
}

interface DemoWorkload {
  name: string; // "sleep.foo"
  app: string;
  namespace: string;
  serviceAccount: string;
  podIp: string;
  servicePort: number;
  workloadPort: number;
  nodeId: string;
  dir: string;
  tokenPath: string;
}

interface Sidecar {
  workload: DemoWorkload;
  envoy: DemoEnvoy;
}

/** The seeds' workloads, in the order of their four output lines. */
const SEED_ORDER = ["sleep.foo", "httpbin.foo", "sleep.bar", "httpbin.bar"];
const READY_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 5_000;

export async function runEnvoyDemo(options: EnvoyDemoOptions): Promise<number> {
  const { out, err } = options;
  const bin = findEnvoyBinary();
  if (!bin.ok) {
    err(`meshkey demo --envoy: ${bin.reason}.`);
    err(`Envoy 1.40 is needed: ${ENVOY_INSTALL_HINT}.`);
    err("(`meshkey demo` without --envoy runs the same checks with Node workloads and needs no Envoy.)");
    return 1;
  }
  const log = pino({ level: options.logLevel ?? "silent" }, pino.destination(2));
  const ttl = options.rotateTtlSeconds ?? 8;
  const rotations = options.rotations ?? 2;
  const root = await mkdtemp(join(tmpdir(), "meshkey-demo-envoy-"));
  const envoys: DemoEnvoy[] = [];
  const apps: Server[] = [];
  let meshkey: RunningMeshkey | undefined;
  let interrupted = false;

  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await Promise.allSettled(envoys.map((e) => e.stop()));
      for (const a of apps) {
        a.closeAllConnections();
        await new Promise((r) => a.close(r));
      }
      await meshkey?.close().catch(() => {});
      await rm(root, { recursive: true, force: true });
    })());
  const killOnExit = () => envoys.forEach((e) => e.kill());
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    const running = envoys.filter((e) => e.running());
    err(`\n${signal}: stopping ${running.length} Envoy process(es) by PID${running.length ? ` (${running.map((e) => e.pid).join(", ")})` : ""} and meshkey`);
    void cleanup().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.on("exit", killOnExit);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  let failures = 0;
  const fail = (line: string) => {
    failures++;
    out(line);
  };
  try {
    // The built-in sample mesh, with workload ports that are free on this machine.
    const workloads = await seedWorkloads(root);
    const meshFile = join(root, "mesh.yaml");
    await writeFile(meshFile, meshYaml(workloads));
    const config = resolveServeConfig([
      "--state-dir", join(root, "state"),
      "--sds-socket", join(root, "sds", "uds_path"),
      "--xds-listen", "127.0.0.1:0",
      "--ca-listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
      "--mesh", meshFile,
      ...(options.rotate ? ["--cert-ttl", `${ttl}s`] : []),
    ]);
    meshkey = await startMeshkey(config, log);
    const mk = meshkey;
    const socketPath = mk.addresses.sds!.replace(/^unix:/, "");
    const xdsAddress = mk.addresses.xds!;

    const startSidecar = async (w: DemoWorkload): Promise<Sidecar> => {
      const adminPort = await freePort();
      const configPath = join(w.dir, "envoy.json");
      // The same code as `meshkey bootstrap --role sidecar …`.
      const { text } = renderBootstrap({
        role: "sidecar",
        nodeId: w.nodeId,
        namespace: w.namespace,
        serviceAccount: w.serviceAccount,
        trustDomain: config.trustDomain,
        xdsAddress,
        sdsSocket: socketPath,
        tokenPath: w.tokenPath,
        adminPort,
        format: "json",
      });
      await writeFile(configPath, text);
      const envoy = startDemoEnvoy({ bin: bin.path, name: `envoy ${w.name}`, configPath, adminPort });
      envoys.push(envoy);
      return { workload: w, envoy };
    };

    for (const w of workloads) {
      await writeFile(w.tokenPath, await mk.devIssuer!.mint({ namespace: w.namespace, serviceAccount: w.serviceAccount, ttlSeconds: 3600 }), { mode: 0o600 });
      apps.push(await startApp(w));
    }
    const sidecars = await Promise.all(workloads.map(startSidecar));
    await Promise.all(sidecars.map((s) => waitSynced(s, workloads)));
    const byName = new Map(sidecars.map((s) => [s.workload.name, s]));
    const sleeps = ["sleep.foo", "sleep.bar"].map((n) => byName.get(n)!);
    const httpbins = ["httpbin.foo", "httpbin.bar"].map((n) => byName.get(n)!);

    // The seeds' four requests: `kubectl exec sleep -- curl http://httpbin.<ns>:8000/ip`.
    for (const from of sleeps) {
      for (const to of httpbins) {
        const r = await curl(from.workload, to.workload).catch((e: Error) => ({ status: 0, body: e.message }));
        const line = `${from.workload.name} to ${to.workload.name}: ${r.status === 0 ? `failed (${r.body})` : r.status}`;
        if (r.status === 200) out(line);
        else fail(line);
      }
    }

    out("");
    out(`${sidecars.length} Envoy ${envoyVersion(bin.path)} sidecars, ADS at ${xdsAddress}, SDS at unix:${socketPath}:`);
    for (const s of sidecars) {
      const w = s.workload;
      out(`  ${w.name.padEnd(12)} pod ${w.podIp.padEnd(10)} inbound ${w.podIp}:${w.workloadPort} → app 127.0.0.1:${w.workloadPort}  pid ${s.envoy.pid}  admin 127.0.0.1:${s.envoy.adminPort}`);
    }

    // What Envoy holds: its admin /certs.
    out("");
    out("certificates in each Envoy's memory (admin /certs):");
    for (const s of sidecars) {
      const w = s.workload;
      const want = spiffeIdOf(config.trustDomain, { namespace: w.namespace, serviceAccount: w.serviceAccount });
      const leaves = leafCertificates(await s.envoy.certs());
      const leaf = leaves[0];
      const san = leaf?.subject_alt_names?.map((n) => n.uri ?? n.dns).join(",") ?? "none";
      const line = `  ${w.name.padEnd(12)} ${san.padEnd(40)} serial ${leaf?.serial_number ?? "none"}  expires ${leaf?.expiration_time ?? "?"}`;
      if (leaves.length === 1 && san === want) out(line);
      else fail(`${line}  (expected one certificate for ${want}, got ${leaves.length})`);
    }

    // What Istio's task checks by hand: no secret file anywhere.
    out("");
    const pemFiles = await findPemFiles(root);
    const expected = new Map([
      ["state/root-cert.pem", "the CA's root certificate"],
      ["state/root-key.pem", "the CA's root key"],
      ["state/dev-issuer-key.pem", "the dev token issuer's key"],
    ]);
    const total = await countFiles(root);
    out(`files under the demo's directory: ${total}; with a PEM key or certificate: ${pemFiles.map((f) => `${f} (${expected.get(f) ?? "UNEXPECTED"})`).join(", ") || "none"}`);
    const unexpected = pemFiles.filter((f) => !expected.has(f));
    if (unexpected.length) fail(`UNEXPECTED key or certificate files: ${unexpected.join(", ")}`);
    else out(`no workload key or certificate file: ${sidecars.length} Envoys hold theirs in memory only (on disk per workload: its token and its bootstrap)`);

    // A workload whose token the mesh does not trust gets no certificate.
    out("");
    failures += await refusedWithForeignToken(workloads, root, startSidecar, out);

    if (options.rotate) failures += await rotationUnderTraffic(sidecars, sleeps, httpbins, ttl, rotations, out);

    out("");
    out(failures === 0 ? "demo passed" : `demo FAILED (${failures} problem${failures === 1 ? "" : "s"})`);
    return failures === 0 ? 0 : 1;
  } catch (e) {
    if (interrupted) return 130;
    throw e;
  } finally {
    await cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("exit", killOnExit);
  }
}

/** sleep and httpbin in foo and bar, from the built-in sample mesh, with free workload ports. */
async function seedWorkloads(root: string): Promise<DemoWorkload[]> {
  const used = new Set<number>();
  const workloads: DemoWorkload[] = [];
  for (const name of SEED_ORDER) {
    const svc = defaultMesh.services.find((s) => `${s.name}.${s.namespace}` === name)!;
    const ep = svc.endpoints[0]!;
    let port = await freePort();
    while (used.has(port)) port = await freePort();
    used.add(port);
    const dir = join(root, "workloads", name);
    await mkdir(dir, { recursive: true });
    workloads.push({
      name,
      app: svc.name,
      namespace: svc.namespace,
      serviceAccount: svc.serviceAccount,
      podIp: ep.address,
      servicePort: svc.ports[0]!.port,
      workloadPort: port,
      nodeId: `sidecar~${ep.address}~${svc.name}-1.${svc.namespace}~${svc.namespace}.svc.cluster.local`,
      dir,
      tokenPath: join(dir, "istio-token"),
    });
  }
  return workloads;
}

function meshYaml(workloads: DemoWorkload[]): string {
  const svc = (w: DemoWorkload): MeshService => defaultMesh.services.find((s) => s.name === w.app && s.namespace === w.namespace)!;
  return toYaml({
    namespaces: defaultMesh.namespaces,
    services: workloads.map((w) => ({
      name: w.app,
      namespace: w.namespace,
      serviceAccount: w.serviceAccount,
      ports: svc(w).ports,
      endpoints: [{ address: w.podIp, port: w.workloadPort }],
    })),
  });
}

/** The workload's app on 127.0.0.1:<workload port>: httpbin answers like httpbin (/ip, /headers). */
async function startApp(w: DemoWorkload): Promise<Server> {
  const server = createServer((req, res) => {
    const body =
      w.app === "httpbin"
        ? { service: w.name, path: req.url, origin: req.socket.remoteAddress, headers: req.headers }
        : { service: w.name, note: "sleep only calls out" };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(w.workloadPort, "127.0.0.1", () => resolve());
  });
  return server;
}

/** `curl http://httpbin.<ns>:8000/ip` from inside the sleep pod: to its own pod IP, from its pod IP. */
function curl(from: DemoWorkload, to: DemoWorkload, path = "/ip"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: from.podIp,
        localAddress: from.podIp,
        port: to.servicePort,
        path,
        headers: { host: `${to.app}.${to.namespace}.svc.cluster.local:${to.servicePort}` },
        agent: false,
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (e: NodeJS.ErrnoException) => reject(new Error(e.code ? `${e.code}: ${e.message}` : e.message)));
    req.end();
  });
}

/** Ready (/ready), configured (LDS, CDS, SDS default and ROOTCA), its inbound listener up, every outbound endpoint known. */
async function waitSynced(s: Sidecar, all: DemoWorkload[]): Promise<void> {
  const { envoy, workload: w } = s;
  await envoy.waitFor("/ready to answer LIVE", async () => (await envoy.admin("/ready")).status === 200, READY_TIMEOUT_MS);
  for (const prefix of ["listener_manager.lds", "cluster_manager.cds", "sds.default", "sds.ROOTCA"]) {
    // A rejected update (a listener that cannot bind, say) will not heal: say so at once.
    const outcome = await envoy.waitFor(
      `${prefix}.update_success >= 1`,
      async () => ((await envoy.stat(`${prefix}.update_rejected`)) > 0 ? "rejected" : (await envoy.stat(`${prefix}.update_success`)) >= 1 && "ok"),
      READY_TIMEOUT_MS,
    );
    if (outcome === "rejected") throw envoy.failure(`rejected a ${prefix} update`);
  }
  await envoy.waitFor(`its inbound listener ${w.podIp}:${w.workloadPort}`, async () => (await envoy.admin("/listeners")).body.includes(`${w.podIp}:${w.workloadPort}`), READY_TIMEOUT_MS);
  for (const to of all.filter((x) => x.app === "httpbin")) {
    const stat = `cluster.outbound|${to.servicePort}||${to.app}.${to.namespace}.svc.cluster.local.membership_healthy`;
    await envoy.waitFor(`${stat} >= 1`, async () => (await envoy.stat(stat)) >= 1, READY_TIMEOUT_MS);
  }
}

/**
 * A sidecar that claims sleep.foo's identity with a well-formed token signed by
 * another issuer: meshkey's SDS answers UNAUTHENTICATED and Envoy never gets a certificate.
 */
async function refusedWithForeignToken(
  workloads: DemoWorkload[],
  root: string,
  startSidecar: (w: DemoWorkload) => Promise<Sidecar>,
  out: (line: string) => void,
): Promise<number> {
  const victim = workloads.find((w) => w.name === "sleep.foo")!;
  const podIp = "127.0.1.3";
  const dir = join(root, "workloads", "intruder");
  await mkdir(dir, { recursive: true });
  const w: DemoWorkload = {
    ...victim,
    name: `${victim.name} (intruder)`,
    podIp,
    nodeId: `sidecar~${podIp}~${victim.app}-2.${victim.namespace}~${victim.namespace}.svc.cluster.local`,
    dir,
    tokenPath: join(dir, "istio-token"),
  };
  // Another issuer's key lives in its own temp dir, gone as soon as the token is minted.
  const otherDir = await mkdtemp(join(tmpdir(), "meshkey-demo-other-issuer-"));
  try {
    const other = await openDevTokenIssuer(otherDir);
    await writeFile(w.tokenPath, await other.mint({ namespace: w.namespace, serviceAccount: w.serviceAccount, ttlSeconds: 3600 }), { mode: 0o600 });
  } finally {
    await rm(otherDir, { recursive: true, force: true });
  }
  const { envoy } = await startSidecar(w);
  out(`an Envoy claiming ${victim.name} (pod ${podIp}, pid ${envoy.pid}) with a token signed by another issuer:`);
  // Refused = meshkey's SDS closed the stream with UNAUTHENTICATED (Envoy counts an
  // update_failure and logs the gRPC status, 16) and no secret arrived.
  const closedLine = await envoy.waitFor(
    "its SDS stream to be closed",
    async () => {
      const logLine = /StreamSecrets gRPC config stream to \S+ closed: [^\n]*/.exec(envoy.log())?.[0];
      return logLine !== undefined && (await envoy.stat("sds.default.update_failure")) >= 1 ? logLine.trim() : undefined;
    },
    READY_TIMEOUT_MS,
  );
  const success = await envoy.stat("sds.default.update_success");
  const certs = leafCertificates(await envoy.certs());
  out(`  Envoy admin /stats: sds.default.update_success ${success}, sds.default.update_failure ${await envoy.stat("sds.default.update_failure")}; /certs: ${certs.length} certificate(s)`);
  const unauthenticated = / closed: 16, /.test(closedLine);
  out(`  Envoy log: ${closedLine}${unauthenticated ? "  (16 = UNAUTHENTICATED)" : ""}`);
  await envoy.stop();
  const refused = success === 0 && certs.length === 0 && unauthenticated;
  out(refused ? `  refused: no certificate for a token meshkey does not trust (Envoy pid ${envoy.pid} stopped)` : "  NOT refused: it got a certificate");
  return refused ? 0 : 1;
}

async function rotationUnderTraffic(
  sidecars: Sidecar[],
  sleeps: Sidecar[],
  httpbins: Sidecar[],
  ttlSeconds: number,
  rotations: number,
  out: (line: string) => void,
): Promise<number> {
  out("");
  out(`rotation under traffic: ${ttlSeconds}s certificates (--cert-ttl), renewed at half of the time they have left; sleep keeps calling both httpbins until every sidecar has rotated ${rotations} times`);
  const serialsOf = async (s: Sidecar) => leafCertificates(await s.envoy.certs()).map((c) => c.serial_number);
  const seen = new Map<Sidecar, string[]>();
  const before = new Map<Sidecar, { pid: number; updates: number; uptime: number }>();
  for (const s of sidecars) {
    seen.set(s, await serialsOf(s));
    before.set(s, { pid: s.envoy.pid, updates: await s.envoy.stat("sds.default.update_success"), uptime: await s.envoy.stat("server.uptime") });
  }

  let stop = false;
  let sent = 0;
  let non200 = 0;
  const firstErrors: string[] = [];
  const traffic = Promise.all(
    sleeps.flatMap((from) =>
      httpbins.map(async (to) => {
        while (!stop) {
          sent++;
          const r = await curl(from.workload, to.workload).catch((e: Error) => ({ status: 0, body: e.message }));
          if (r.status !== 200) {
            non200++;
            if (firstErrors.length < 3) firstErrors.push(`${from.workload.name} to ${to.workload.name}: ${r.status || r.body}`);
          }
          await new Promise((res) => setTimeout(res, 10)); // pacing, so two cores are not saturated
        }
      }),
    ),
  );
  let error: Error | undefined;
  try {
    // Bounded: `rotations` half-lives, plus slack for issuance and push.
    await sidecars[0]!.envoy.waitFor(
      `${rotations} rotations on every sidecar`,
      async () => {
        for (const s of sidecars) {
          const list = seen.get(s)!;
          for (const serial of await serialsOf(s)) if (!list.includes(serial)) list.push(serial);
        }
        return sidecars.every((s) => seen.get(s)!.length > rotations);
      },
      (rotations * ttlSeconds * 1000) / 2 + 20_000,
    );
  } catch (e) {
    error = e as Error;
  } finally {
    stop = true;
    await traffic;
  }

  let problems = 0;
  for (const s of sidecars) {
    const b = before.get(s)!;
    const serials = seen.get(s)!;
    const updates = await s.envoy.stat("sds.default.update_success").catch(() => NaN);
    const uptime = await s.envoy.stat("server.uptime").catch(() => NaN);
    const samePid = s.envoy.running() && s.envoy.pid === b.pid && processAlive(b.pid);
    const rotated = serials.length > rotations;
    out(
      `  ${s.workload.name.padEnd(12)} serial ${serials.join(" → ")}  sds.default.update_success ${b.updates} → ${updates}  pid ${b.pid} → ${samePid ? s.envoy.pid : "gone"} (uptime ${b.uptime}s → ${uptime}s)`,
    );
    if (!rotated || !samePid || !(uptime >= b.uptime)) problems++;
  }
  out(`  ${sent} requests during rotation, ${non200} non-200${firstErrors.length ? ` (first: ${firstErrors.join("; ")})` : ""}`);
  out(problems === 0 && non200 === 0 && !error ? "  rotated under traffic with the same Envoy processes and no failed request" : "  rotation FAILED");
  if (error) out(`  ${error.message.split("\n")[0]}`);
  return problems + (non200 > 0 ? 1 : 0) + (error ? 1 : 0);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function countFiles(root: string): Promise<number> {
  let n = 0;
  await walk(root, async () => void n++);
  return n;
}

/** Paths (relative to root) of files holding a PEM private key or certificate. */
async function findPemFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  await walk(root, async (p, size) => {
    if (size < 1_000_000 && /-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----/.test(await readFile(p, "utf8"))) found.push(relative(root, p));
  });
  return found.sort();
}

async function walk(dir: string, onFile: (path: string, size: number) => Promise<void>): Promise<void> {
  for (const name of await readdir(dir)) {
    const p = join(dir, name);
    const st = await stat(p).catch(() => undefined);
    if (!st) continue;
    if (st.isDirectory()) await walk(p, onFile);
    else if (st.isFile()) await onFile(p, st.size);
  }
}
