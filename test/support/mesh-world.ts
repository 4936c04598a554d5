// A small mesh on one host for real-Envoy tests: a `meshkey serve` child process,
// workloads (a Node HTTP app on 127.0.0.1:<workload port>) each with a real Envoy
// sidecar bootstrapped by the `meshkey bootstrap` CLI exactly as a user would,
// on its own 127.<subnet>.x.y pod IP. Everything started here is stopped here, by PID.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify as toYaml } from "yaml";
import { startServeProcess, type ServeProcess } from "./serve-process.js";
import { freePort, startEnvoy, type EnvoyProcess } from "./envoy.js";

export interface WorkloadSpec {
  name: string;
  namespace: string;
  serviceAccount?: string;
  /** Service port (outbound listeners on every sidecar bind <pod IP>:<this>). */
  port?: number;
  protocol?: "HTTP" | "GRPC" | "TCP";
}

export interface Workload extends Required<WorkloadSpec> {
  podIp: string;
  /** Where the app listens on 127.0.0.1 and the sidecar's inbound listener on the pod IP. */
  workloadPort: number;
  nodeId: string;
  tokenPath: string;
}

export interface Sidecar {
  workload: Workload;
  envoy: EnvoyProcess;
  bootstrapPath: string;
}

export interface MeshWorld {
  dir: string;
  serve: ServeProcess;
  meshFile: string;
  workloads: Workload[];
  /** Writes the mesh file again (the serve process watches it). */
  writeMesh(workloads: Workload[], extra?: Record<string, unknown>): void;
  meshYaml(workloads: Workload[]): string;
  /** A token from the dev issuer of the serve process's state dir. */
  token(namespace: string, serviceAccount: string, ttl?: string): string;
  workload(spec: WorkloadSpec): Promise<Workload>;
  startApp(w: Workload): Promise<Server>;
  startSidecar(w: Workload, bootstrapArgs?: string[]): Promise<Sidecar>;
  bootstrap(w: Workload, adminPort: number, extraArgs?: string[]): string;
  /** Restarts meshkey serve on the same state dir and ports. */
  restartServe(signal?: NodeJS.Signals): Promise<void>;
  /** Stops meshkey serve (by PID) and leaves it down, for outages longer than a restart. */
  stopServe(signal?: NodeJS.Signals): Promise<void>;
  /** Starts meshkey serve again on the same state dir and ports, after stopServe. */
  startServe(): Promise<void>;
  /**
   * The SDS socket the serve process is configured with (and pushes in ADS config). With
   * `--no-sds` in serveArgs, a node agent the test starts listens there (split roles).
   */
  sdsSocketPath: string;
  close(): Promise<void>;
}

export interface MeshWorldOptions {
  /** Second octet of the pod IPs (127.<subnet>.<n>.<m>): distinct per test file. */
  subnet: number;
  serveArgs?: string[];
  namespaces?: Array<{ name: string; mtls: "STRICT" | "PERMISSIVE" | "DISABLE" }>;
}

/** Runs a meshkey CLI verb; throws with its stderr unless it exits 0. */
export function meshkeyCli(args: string[]): string {
  const r = spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`meshkey ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** One HTTP request; resolves with the status and body, or rejects on a connection error. */
export function httpGet(
  address: string,
  port: number,
  host: string,
  path = "/",
  timeoutMs = 5_000,
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: address, port, path, headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`request to ${address}:${port} (Host ${host}) timed out`)));
    req.on("error", reject);
    req.end();
  });
}

export async function createMeshWorld(options: MeshWorldOptions): Promise<MeshWorld> {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-world-"));
  mkdirSync(join(dir, "tokens"));
  const meshFile = join(dir, "mesh.yaml");
  const workloads: Workload[] = [];
  const sdsSocketPath = join(dir, "sds", "uds_path");
  const apps: Server[] = [];
  const sidecars: Sidecar[] = [];
  let nextHost = 1;
  const namespaces = options.namespaces;

  const meshYaml = (ws: Workload[], extra: Record<string, unknown> = {}) =>
    toYaml({
      ...(namespaces ? { namespaces } : {}),
      services: ws.map((w) => ({
        name: w.name,
        namespace: w.namespace,
        serviceAccount: w.serviceAccount,
        ports: [{ name: "http", port: w.port, protocol: w.protocol }],
        endpoints: [{ address: w.podIp, port: w.workloadPort }],
      })),
      ...extra,
    });

  // The serve process needs a mesh file at start; the first workloads come with workload().
  writeFileSync(meshFile, "services: []\n");
  // Fixed ports, so that a restart keeps the addresses every Envoy was bootstrapped with.
  const ports = { xds: await freePort(), xdsTls: await freePort(), ca: await freePort(), admin: await freePort() };
  const serveArgs = [
    "--state-dir", join(dir, "state"),
    "--sds-socket", sdsSocketPath,
    "--xds-listen", `127.0.0.1:${ports.xds}`,
    "--xds-tls-listen", `127.0.0.1:${ports.xdsTls}`,
    "--ca-listen", `127.0.0.1:${ports.ca}`,
    "--admin-listen", `127.0.0.1:${ports.admin}`,
    "--mesh", meshFile,
    ...(options.serveArgs ?? []),
  ];
  let serve = await startServeProcess(serveArgs);

  const world: MeshWorld = {
    dir,
    get serve() {
      return serve;
    },
    meshFile,
    workloads,
    meshYaml,
    writeMesh(ws, extra) {
      // Written whole to a temp file and renamed, as an editor or a ConfigMap update does.
      const tmp = `${meshFile}.tmp`;
      writeFileSync(tmp, meshYaml(ws, extra));
      spawnSync("mv", [tmp, meshFile]);
    },
    token(namespace, serviceAccount, ttl = "1h") {
      return meshkeyCli(["token", "--namespace", namespace, "--service-account", serviceAccount, "--ttl", ttl, "--state-dir", join(dir, "state")]).trim();
    },
    async workload(spec) {
      const n = nextHost++;
      const w: Workload = {
        serviceAccount: spec.name,
        port: 8000,
        protocol: "HTTP",
        ...spec,
        podIp: `127.${options.subnet}.${Math.floor(n / 250) + 1}.${(n % 250) + 1}`,
        workloadPort: await freePort(),
        nodeId: "",
        tokenPath: join(dir, "tokens", `${spec.name}.${spec.namespace}`),
      };
      w.nodeId = `sidecar~${w.podIp}~${w.name}-1.${w.namespace}~${w.namespace}.svc.cluster.local`;
      writeFileSync(w.tokenPath, world.token(w.namespace, w.serviceAccount));
      workloads.push(w);
      return w;
    },
    async startApp(w) {
      // An httpbin-like app: answers with who it is and the headers its sidecar passed on.
      const server = createServer((req, res) => {
        const body = JSON.stringify({ service: `${w.name}.${w.namespace}`, path: req.url, headers: req.headers });
        res.writeHead(200, { "content-type": "application/json" }).end(body);
      });
      await new Promise<void>((r) => server.listen(w.workloadPort, "127.0.0.1", r));
      apps.push(server);
      return server;
    },
    bootstrap(w, adminPort, extraArgs = []) {
      const path = join(dir, `envoy-${w.name}.${w.namespace}.json`);
      meshkeyCli([
        "bootstrap", "--role", "sidecar",
        "--node-id", w.nodeId,
        "--namespace", w.namespace,
        "--service-account", w.serviceAccount,
        // --xds-address repeats add replicas: a caller's own address replaces serve's.
        ...(extraArgs.includes("--xds-address") ? [] : ["--xds-address", serve.xds!]),
        "--sds-socket", serve.sds?.replace(/^unix:/, "") ?? sdsSocketPath,
        "--token-path", w.tokenPath,
        "--admin-port", String(adminPort),
        "-o", path,
        ...extraArgs,
      ]);
      return path;
    },
    async startSidecar(w, bootstrapArgs = []) {
      const adminPort = await freePort();
      const bootstrapPath = world.bootstrap(w, adminPort, bootstrapArgs);
      const envoy = await startEnvoy({ config: bootstrapPath, adminPort, name: `envoy ${w.name}.${w.namespace}` });
      const sidecar = { workload: w, envoy, bootstrapPath };
      sidecars.push(sidecar);
      return sidecar;
    },
    async restartServe(signal = "SIGTERM") {
      await serve.stop(signal);
      serve = await startServeProcess(serveArgs);
    },
    async stopServe(signal = "SIGTERM") {
      await serve.stop(signal);
    },
    async startServe() {
      serve = await startServeProcess(serveArgs);
    },
    sdsSocketPath,
    async close() {
      for (const s of sidecars) await s.envoy.stop();
      for (const a of apps) await new Promise((r) => a.close(r));
      await serve.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return world;
}

/** Waits until a sidecar has its listeners, clusters and certificates (read from Envoy's /stats). */
export async function waitForSidecarSynced(envoy: EnvoyProcess, listenerCount?: number): Promise<void> {
  await envoy.waitForStat("listener_manager.lds.update_success", (v) => v >= 1);
  await envoy.waitForStat("cluster_manager.cds.update_success", (v) => v >= 1);
  await envoy.waitForStat("sds.default.update_success", (v) => v >= 1);
  await envoy.waitForStat("sds.ROOTCA.update_success", (v) => v >= 1);
  if (listenerCount !== undefined) await envoy.waitForStat("listener_manager.total_listeners_active", (v) => v >= listenerCount);
}

/**
 * The setup most real-Envoy tests share: `server`'s app, a sidecar for `client` and
 * one for `server`, both synced, and a request from the client's pod IP to
 * `<server>.<ns>.svc.cluster.local:<port>` answered 200 through both sidecars.
 */
export async function startTrafficPair(world: MeshWorld, client: Workload, server: Workload): Promise<{ client: Sidecar; server: Sidecar }> {
  await world.startApp(server);
  const clientSidecar = await world.startSidecar(client);
  const serverSidecar = await world.startSidecar(server);
  await waitForSidecarSynced(clientSidecar.envoy);
  await waitForSidecarSynced(serverSidecar.envoy);
  await clientSidecar.envoy.waitFor("a 200 through both sidecars", async () => {
    const r = await httpGet(client.podIp, server.port, `${server.name}.${server.namespace}.svc.cluster.local:${server.port}`);
    return r.status === 200;
  });
  return { client: clientSidecar, server: serverSidecar };
}
