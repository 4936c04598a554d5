// Faults of the mesh file and of the meshkey process, with real Envoy sidecars carrying
// traffic (sleep.foo → httpbin.bar through both sidecars), judged by Envoy's admin:
// - a YAML error, a truncated or emptied file, a file above --max-mesh-bytes, and a mass
//   removal under --guard-mass-removal are refused: Envoy's LDS/CDS versions and update
//   counters do not move and no request fails;
// - meshkey SIGKILLed and restarted on the same state dir: no request fails, Envoy
//   reconnects to ADS and SDS and re-syncs, with the same root and the same SPIFFE IDs;
// - meshkey SIGTERMed in the middle of a push: Envoy is left with the whole old config
//   or the whole new one (nothing warming, every listener's routes there, every route's
//   cluster there, every cluster with endpoints), never half of each.
import type { ChildProcess } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { envoySuite, freePort, startEnvoy, type ConfigDumpJson, type EnvoyCerts, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, httpGet, meshkeyCli, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("mesh-faults");

const MAX_MESH_BYTES = 256 * 1024;

let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;
let base: Workload[];
let sidecars: Sidecar[];
/** Services the push test adds: each a new cluster, outbound listener and route configuration on every sidecar. */
let extra: Workload[];

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://${world.serve.admin}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}
const invalidReloads = () => metric("meshkey_mesh_reloads_total", 'result="invalid"');

/** What a refused mesh change must leave untouched, read from Envoy's /stats and /config_dump. */
async function xdsState(envoy: EnvoyProcess): Promise<Record<string, number | string>> {
  const names = [
    "listener_manager.lds.update_success",
    "listener_manager.lds.update_attempt",
    "listener_manager.lds.update_rejected",
    "listener_manager.lds.version",
    "listener_manager.total_listeners_active",
    "cluster_manager.cds.update_success",
    "cluster_manager.cds.update_attempt",
    "cluster_manager.cds.update_rejected",
    "cluster_manager.cds.version",
    "cluster_manager.active_clusters",
  ];
  const stats = await envoy.stats("^(listener_manager|cluster_manager)\\.");
  const state: Record<string, number | string> = Object.fromEntries(names.map((n) => [n, stats.get(n) ?? -1]));
  const dump = await envoy.configDump();
  for (const c of dump.configs) {
    const kind = c["@type"].split(".").pop()!;
    if (kind === "ListenersConfigDump" || kind === "ClustersConfigDump") state[`${kind}.version_info`] = String(c["version_info"] ?? "");
  }
  return state;
}

/** Polls for `ms` (bounded) and fails as soon as `check` reports a change. */
async function holdsFor(what: string, ms: number, check: () => Promise<string | undefined>): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const broken = await check();
    if (broken !== undefined) assert.unreachable(`${what}: ${broken}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Traffic {
  total: number;
  failures: string[];
  stop(): Promise<void>;
}

/** A request loop sleep → httpbin through both sidecars, bounded in count and time. */
function traffic(maxMs = 120_000): Traffic {
  let stopped = false;
  const t: Traffic = {
    total: 0,
    failures: [],
    async stop() {
      stopped = true;
      await done;
    },
  };
  const done = (async () => {
    const deadline = Date.now() + maxMs;
    while (!stopped && t.total < 20_000 && Date.now() < deadline) {
      const r = await httpGet(sleep.workload.podIp, 8000, "httpbin.bar:8000").then(
        (x) => (x.status === 200 ? "" : `status ${x.status}`),
        (e: Error) => e.message,
      );
      t.total++;
      if (r !== "") t.failures.push(`${new Date().toISOString()} ${r}`);
      await new Promise((res) => setTimeout(res, 10));
    }
  })();
  return t;
}

async function withTraffic(body: () => Promise<void>): Promise<number> {
  const t = traffic();
  try {
    await sleep.envoy.waitFor("some traffic first", async () => t.total >= 5);
    await body();
    const after = t.total;
    await sleep.envoy.waitFor("traffic after the fault", async () => t.total >= after + 5);
  } finally {
    await t.stop();
  }
  assert.equal(t.failures, [], `${t.failures.length} of ${t.total} requests failed`);
  return t.total;
}

/** Writes the mesh file as a deploy would: a temp file renamed over it. */
function replaceMeshFile(text: string): void {
  const tmp = `${world.meshFile}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, world.meshFile);
}

/**
 * The refused change is written, meshkey counts it as invalid, and then for 2 s neither
 * Envoy's counters nor its versions move, and no request fails.
 */
async function assertRefusedWithoutChange(write: () => void, logPattern: RegExp): Promise<void> {
  const before = await Promise.all(sidecars.map((s) => xdsState(s.envoy)));
  const invalid = await invalidReloads();
  const stderrAt = world.serve.stderr().length;
  await withTraffic(async () => {
    write();
    await sleep.envoy.waitFor("meshkey to count the refusal", async () => (await invalidReloads()) === invalid + 1);
    await holdsFor("Envoy saw no change", 2_000, async () => {
      for (const [i, s] of sidecars.entries()) {
        const now = await xdsState(s.envoy);
        if (JSON.stringify(now) !== JSON.stringify(before[i])) return `${s.workload.name}: ${JSON.stringify(before[i])} → ${JSON.stringify(now)}`;
      }
      return undefined;
    });
  });
  assert.match(world.serve.stderr().slice(stderrAt), logPattern);
  assert.is(await invalidReloads(), invalid + 1, "counted once");
}

/**
 * A loopback TCP relay between the sidecars and meshkey's ADS port, so that the test sees
 * the moment a push leaves meshkey. Bytes pass unchanged and undelayed both ways.
 */
interface AdsRelay {
  address: string;
  /** Calls `fn` once, on the next bytes meshkey sends to any sidecar. */
  onNextPush(fn: () => void): void;
  close(): Promise<void>;
}
async function startAdsRelay(target: () => string): Promise<AdsRelay> {
  let next: (() => void) | undefined;
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const [host, port] = target().split(":");
    const up = connect(Number(port), host!);
    for (const s of [down, up]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    down.on("data", (d) => up.write(d));
    up.on("data", (d) => {
      const fn = next;
      next = undefined;
      fn?.();
      down.write(d);
    });
    down.once("close", () => up.destroy());
    up.once("close", () => down.destroy());
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return {
    address: `127.0.0.1:${port}`,
    onNextPush: (fn) => (next = fn),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
let relay: AdsRelay;

/** A sidecar bootstrapped by `meshkey bootstrap` exactly as in the harness, but with ADS at `xdsAddress`. */
async function startSidecarVia(w: Workload, xdsAddress: string): Promise<Sidecar> {
  const adminPort = await freePort();
  const bootstrapPath = join(world.dir, `envoy-${w.name}.${w.namespace}.json`);
  meshkeyCli([
    "bootstrap", "--role", "sidecar",
    "--node-id", w.nodeId,
    "--namespace", w.namespace,
    "--service-account", w.serviceAccount,
    "--xds-address", xdsAddress,
    "--sds-socket", world.serve.sds!.replace(/^unix:/, ""),
    "--token-path", w.tokenPath,
    "--admin-port", String(adminPort),
    "-o", bootstrapPath,
  ]);
  const envoy = await startEnvoy({ config: bootstrapPath, adminPort, name: `envoy ${w.name}.${w.namespace}` });
  return { workload: w, envoy, bootstrapPath };
}

test.before(async () => {
  world = await createMeshWorld({
    subnet: 70,
    // info: the test reads "mesh published" from meshkey's log to time a SIGTERM.
    serveArgs: ["--guard-mass-removal", "--max-mesh-bytes", String(MAX_MESH_BYTES), "--log-level", "info"],
  });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  base = [sleepW, httpbinW];
  // Not started: their endpoints are pod IPs in the mesh only (nothing needs to answer there).
  extra = [];
  for (const [i, name] of ["svc-a", "svc-b", "svc-c", "svc-d"].entries()) {
    extra.push({ ...httpbinW, name, namespace: "baz", serviceAccount: name, port: 9101 + i, podIp: `127.70.9.${i + 1}`, nodeId: "", tokenPath: "" });
  }
  world.writeMesh(base);
  await world.startApp(httpbinW);
  relay = await startAdsRelay(() => world.serve.xds!);
  sleep = await startSidecarVia(sleepW, relay.address);
  httpbin = await startSidecarVia(httpbinW, relay.address);
  sidecars = [sleep, httpbin];
  for (const s of sidecars) await waitForSidecarSynced(s.envoy);
  await sleep.envoy.waitFor("a 200 from httpbin.bar through the sidecars", async () => (await httpGet(sleep.workload.podIp, 8000, "httpbin.bar:8000")).status === 200);
});

test.after(async () => {
  for (const s of sidecars ?? []) await s.envoy.stop();
  await world?.close();
  await relay?.close();
});

test("a YAML error in the mesh file is refused: Envoy's LDS/CDS versions and counters do not move, traffic keeps getting 200", async () => {
  await assertRefusedWithoutChange(
    () => replaceMeshFile(`${world.meshYaml(base)}  - name: broken\n   namespace: [\n`),
    /"err":"[^"]*YAML[^"]*","msg":"mesh change rejected/,
  );
});

for (const c of [
  { name: "truncated to 0 bytes in place", write: () => writeFileSync(world.meshFile, ""), log: /the mesh file is empty/ },
  { name: "emptied down to whitespace and comments", write: () => replaceMeshFile("\n# emptied by a failed deploy\n   \n"), log: /the mesh file is empty/ },
  { name: "left with no services key", write: () => replaceMeshFile("namespaces:\n  - name: foo\n"), log: /services: is required/ },
]) {
  test(`a mesh file ${c.name} is refused, not pushed as 0 clusters and 0 listeners: Envoy sees no change`, async () => {
    await assertRefusedWithoutChange(c.write, c.log);
  });
}

test("a mesh file above --max-mesh-bytes is refused before it is parsed: Envoy sees no change", async () => {
  await assertRefusedWithoutChange(
    () => replaceMeshFile(`${world.meshYaml(base)}# ${"x".repeat(MAX_MESH_BYTES)}\n`),
    new RegExp(`above the limit of ${MAX_MESH_BYTES} bytes \\(--max-mesh-bytes\\); not parsed`),
  );
});

test("with --guard-mass-removal, a change that removes every service (even an explicit services: []) is refused: Envoy sees no change", async () => {
  await assertRefusedWithoutChange(() => replaceMeshFile("services: []\n"), /refused by --guard-mass-removal: it removes 2 of 2 services/);
});

interface CertView {
  rootSerials: string[];
  rootSans: string[];
  leafSerial: string;
  leafSans: string[];
}
async function certView(envoy: EnvoyProcess): Promise<CertView> {
  const certs: EnvoyCerts = await envoy.certs();
  const roots = certs.certificates.flatMap((c) => c.ca_cert);
  const leaves = certs.certificates.flatMap((c) => c.cert_chain);
  const sans = (d: { subject_alt_names: Array<{ uri?: string; dns?: string }> }) => d.subject_alt_names.map((s) => s.uri ?? s.dns ?? "").sort();
  return {
    rootSerials: [...new Set(roots.map((r) => r.serial_number))].sort(),
    rootSans: [...new Set(roots.flatMap(sans))].sort(),
    leafSerial: leaves[0]?.serial_number ?? "",
    leafSans: [...new Set(leaves.flatMap(sans))].sort(),
  };
}

test("meshkey SIGKILLed and restarted on the same state dir: no request fails, Envoy re-syncs ADS and SDS, root and SPIFFE IDs unchanged", async () => {
  const before = await Promise.all(sidecars.map((s) => certView(s.envoy)));
  for (const [i, s] of sidecars.entries()) {
    assert.is(before[i]!.rootSerials.length, 1, `${s.workload.name}: one root in /certs`);
    assert.equal(before[i]!.leafSans, [`spiffe://cluster.local/ns/${s.workload.namespace}/sa/${s.workload.serviceAccount}`]);
  }
  // The earlier tests left a refused file in place: a restart would load it. Put the good mesh back.
  const ok = await metric("meshkey_mesh_reloads_total", 'result="ok"');
  world.writeMesh(base);
  await sleep.envoy.waitFor("meshkey to reload the good mesh", async () => (await metric("meshkey_mesh_reloads_total", 'result="ok"')) > ok);
  const fingerprint = world.serve.rootFingerprint;
  const counters = async (e: EnvoyProcess) => ({
    sds: await e.stat("sds.default.update_success"),
    lds: await e.stat("listener_manager.lds.update_success"),
    adsConnects: await e.stat("cluster.xds-grpc.upstream_cx_total"),
  });
  const c0 = await Promise.all(sidecars.map((s) => counters(s.envoy)));
  let recoveryMs = 0;
  await withTraffic(async () => {
    const t0 = Date.now();
    await world.restartServe("SIGKILL");
    const upMs = Date.now() - t0;
    const stages: string[] = [`meshkey ready ${upMs} ms after SIGKILL`];
    for (const [i, s] of sidecars.entries()) {
      await s.envoy.waitForStat("control_plane.connected_state", (v) => v === 1, 30_000);
      stages.push(`${s.workload.name} ADS connected ${Date.now() - t0} ms`);
      await s.envoy.waitForStat("listener_manager.lds.update_success", (v) => v > c0[i]!.lds, 30_000);
      stages.push(`${s.workload.name} LDS ${Date.now() - t0} ms`);
      // SDS re-synced: the restarted agent has no cached certificate and pushes a new one.
      await s.envoy.waitForStat("sds.default.update_success", (v) => v > c0[i]!.sds, 30_000);
      stages.push(`${s.workload.name} SDS ${Date.now() - t0} ms`);
    }
    recoveryMs = Date.now() - t0;
    console.log(`  ${stages.join("; ")}`);
  });
  assert.is(world.serve.rootFingerprint, fingerprint, "meshkey kept its root");
  for (const [i, s] of sidecars.entries()) {
    const after = await s.envoy.waitFor("Envoy's /certs to show the renewed certificate", async () => {
      const v = await certView(s.envoy);
      return v.leafSerial !== before[i]!.leafSerial ? v : undefined;
    });
    assert.equal(after.rootSerials, before[i]!.rootSerials, `${s.workload.name}: the root's serial in /certs`);
    assert.equal(after.rootSans, before[i]!.rootSans, `${s.workload.name}: the root's SANs in /certs`);
    assert.equal(after.leafSans, before[i]!.leafSans, `${s.workload.name}: the workload's SPIFFE ID`);
    // Reconnected with backoff, not a hot loop: a handful of ADS connection attempts.
    const connects = (await s.envoy.stat("cluster.xds-grpc.upstream_cx_total")) - c0[i]!.adsConnects;
    assert.ok(connects >= 1 && connects <= 20, `${s.workload.name}: ${connects} ADS connection attempts during the restart`);
    console.log(`  ${s.workload.name}: root serial ${after.rootSerials.join(",")} kept; leaf ${before[i]!.leafSerial} → ${after.leafSerial}; ${connects} ADS connects; re-synced ${recoveryMs} ms after SIGKILL`);
  }
});

// ---- SIGTERM mid-push --------------------------------------------------------------------

interface EnvoyConfig {
  warmingClusters: string[];
  clusters: Map<string, { eds: boolean }>;
  endpoints: Map<string, number>;
  listeners: Map<string, { routeConfig: string | undefined; warming: boolean; error: string | undefined }>;
  routes: Map<string, { domains: string[]; clusters: string[] }>;
}

function readConfig(dump: ConfigDumpJson): EnvoyConfig {
  const out: EnvoyConfig = { warmingClusters: [], clusters: new Map(), endpoints: new Map(), listeners: new Map(), routes: new Map() };
  type Any = Record<string, unknown>;
  for (const c of dump.configs as Any[]) {
    const kind = String(c["@type"]).split(".").pop();
    if (kind === "ClustersConfigDump") {
      for (const w of (c["dynamic_warming_clusters"] as Any[] | undefined) ?? []) out.warmingClusters.push(String((w["cluster"] as Any)["name"]));
      for (const a of (c["dynamic_active_clusters"] as Any[] | undefined) ?? []) {
        const cl = a["cluster"] as Any;
        out.clusters.set(String(cl["name"]), { eds: cl["type"] === "EDS" });
      }
    } else if (kind === "EndpointsConfigDump") {
      for (const e of (c["dynamic_endpoint_configs"] as Any[] | undefined) ?? []) {
        const cla = e["endpoint_config"] as Any;
        const n = ((cla["endpoints"] as Any[] | undefined) ?? []).reduce((sum, l) => sum + ((l["lb_endpoints"] as unknown[] | undefined)?.length ?? 0), 0);
        out.endpoints.set(String(cla["cluster_name"]), n);
      }
    } else if (kind === "ListenersConfigDump") {
      for (const l of (c["dynamic_listeners"] as Any[] | undefined) ?? []) {
        const active = l["active_state"] as Any | undefined;
        const text = JSON.stringify(active ?? {});
        out.listeners.set(String(l["name"]), {
          routeConfig: /"route_config_name":"([^"]+)"/.exec(text)?.[1],
          warming: l["warming_state"] !== undefined,
          error: (l["error_state"] as Any | undefined)?.["details"] as string | undefined,
        });
      }
    } else if (kind === "RoutesConfigDump") {
      for (const r of (c["dynamic_route_configs"] as Any[] | undefined) ?? []) {
        const rc = r["route_config"] as Any;
        const vhosts = (rc["virtual_hosts"] as Any[] | undefined) ?? [];
        out.routes.set(String(rc["name"]), {
          domains: vhosts.flatMap((v) => (v["domains"] as string[] | undefined) ?? []),
          clusters: [...JSON.stringify(vhosts).matchAll(/"cluster":"([^"]+)"/g)].map((m) => m[1]!),
        });
      }
    }
  }
  return out;
}

/** Why the config is not whole (empty when it is): dangling references or resources still warming. */
function dangling(c: EnvoyConfig): string[] {
  const problems: string[] = [];
  if (c.warmingClusters.length > 0) problems.push(`clusters still warming (no EDS answer): ${c.warmingClusters.join(", ")}`);
  for (const [name, l] of c.listeners) {
    if (l.warming) problems.push(`listener ${name} still warming`);
    if (l.error) problems.push(`listener ${name} in error: ${l.error}`);
    if (l.routeConfig !== undefined && !c.routes.has(l.routeConfig)) problems.push(`listener ${name}: route configuration ${l.routeConfig} missing`);
  }
  for (const [name, r] of c.routes) {
    for (const cl of r.clusters) if (!c.clusters.has(cl)) problems.push(`route configuration ${name}: cluster ${cl} missing`);
  }
  for (const [name, cl] of c.clusters) {
    if (cl.eds && !((c.endpoints.get(name) ?? 0) > 0)) problems.push(`EDS cluster ${name} has no endpoints`);
  }
  return problems;
}

/** Which of the push's new services each kind of resource carries (clusters, listeners, routes, endpoints). */
function newServicesPresent(c: EnvoyConfig, podIp: string): Record<string, string[]> {
  const present: Record<string, string[]> = { clusters: [], listeners: [], routes: [], endpoints: [] };
  for (const w of extra) {
    const host = `${w.name}.${w.namespace}.svc.cluster.local`;
    const cluster = `outbound|${w.port}||${host}`;
    if (c.clusters.has(cluster)) present.clusters!.push(w.name);
    if (c.listeners.has(`${podIp}_${w.port}`)) present.listeners!.push(w.name);
    if (c.routes.get(String(w.port))?.domains.includes(host)) present.routes!.push(w.name);
    if ((c.endpoints.get(cluster) ?? 0) > 0) present.endpoints!.push(w.name);
  }
  return present;
}

/**
 * "old" when none of the new services is anywhere in Envoy's config, "new" when all of
 * them are in every kind of resource, and the config has nothing dangling or warming;
 * otherwise a description of the half-applied state.
 */
async function classify(envoy: EnvoyProcess, podIp: string): Promise<{ state: "old" | "new" | "half"; detail: string }> {
  const c = readConfig(await envoy.configDump("?include_eds"));
  const problems = dangling(c);
  const present = newServicesPresent(c, podIp);
  const counts = Object.values(present).map((p) => p.length);
  const detail = `${JSON.stringify(present)}${problems.length ? `; ${problems.join("; ")}` : ""}`;
  if (problems.length > 0) return { state: "half", detail };
  if (counts.every((n) => n === 0)) return { state: "old", detail };
  if (counts.every((n) => n === extra.length)) return { state: "new", detail };
  return { state: "half", detail };
}

/** Waits (bounded) until every sidecar has a whole config in the given state. */
async function waitForWhole(state: "old" | "new", timeoutMs = 30_000): Promise<void> {
  for (const s of sidecars) {
    let last = "";
    await s.envoy.waitFor(
      `the whole ${state} config on ${s.workload.name}`,
      async () => {
        const r = await classify(s.envoy, s.workload.podIp);
        last = r.detail;
        return r.state === state;
      },
      timeoutMs,
    ).catch((err: Error) => {
      throw new Error(`${err.message.split("\n")[0]} — last seen: ${last}`);
    });
  }
}

/** Resolves with the child's exit (bounded): it was signalled already. */
function exitOf(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`meshkey (pid ${child.pid}) did not exit within ${timeoutMs} ms of SIGTERM`)), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

const triggers: Array<{ name: string; arm: (kill: () => void) => Promise<void> | void }> = [
  { name: "right after the file write", arm: (kill) => kill() },
  {
    name: "as meshkey logs that it published the new mesh",
    arm: (kill) => {
      const child = world.serve.child;
      const onData = (d: Buffer) => {
        if (String(d).includes('"msg":"mesh published"')) {
          child.stderr!.off("data", onData);
          kill();
        }
      };
      child.stderr!.on("data", onData);
    },
  },
  // The sharpest point: meshkey has written the first response of the push, and the
  // requests Envoy makes for the new clusters' endpoints and the new listeners' routes
  // are still to come. Several times over.
  ...[1, 2, 3].map((n) => ({
    name: `as the push's first bytes leave meshkey (#${n})`,
    arm: (kill: () => void) => relay.onNextPush(kill),
  })),
];

test("meshkey SIGTERMed mid-push (new clusters, listeners, routes): Envoy keeps the whole old config or gets the whole new one, never half", async () => {
  const outcomes: string[] = [];
  await withTraffic(async () => {
    for (const trigger of triggers) {
      await waitForWhole("old");
      const serve = world.serve;
      let killedAt = 0;
      const kill = () => {
        if (killedAt === 0) {
          killedAt = Date.now();
          serve.child.kill("SIGTERM");
        }
      };
      const armed = trigger.arm(kill);
      world.writeMesh([...base, ...extra]);
      await armed;
      // Not serve.stop(): a second SIGTERM would take the default action and cut the drain short.
      const exit = await exitOf(serve.child, 15_000);
      assert.is(exit.code, 0, `meshkey's exit after SIGTERM (${trigger.name}): ${serve.stderr().slice(-2_000)}`);
      // meshkey is gone: what Envoy has now is all it will have. Allow it a bounded moment to
      // finish applying what it already received (well below the 15 s initial fetch timeout
      // after which a warming cluster would be activated with no endpoints).
      const results: string[] = [];
      for (const s of sidecars) {
        let r = await classify(s.envoy, s.workload.podIp);
        const deadline = Date.now() + 3_000;
        while (r.state === "half" && Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, 50));
          r = await classify(s.envoy, s.workload.podIp);
        }
        assert.ok(r.state !== "half", `SIGTERM ${trigger.name}: ${s.workload.name} was left with half a config: ${r.detail}`);
        results.push(`${s.workload.name}=${r.state}`);
      }
      outcomes.push(`${trigger.name} (${Date.now() - killedAt} ms to exit and settle): ${results.join(" ")}`);
      // Back to the old mesh for the next trial: restarted on the old file, Envoy converges.
      world.writeMesh(base);
      await world.restartServe();
    }
    // Recovery: a restart on the new file converges every sidecar to the whole new config.
    world.writeMesh([...base, ...extra]);
    const t0 = Date.now();
    await waitForWhole("new");
    outcomes.push(`the new mesh, published by the running meshkey: whole on every sidecar after ${Date.now() - t0} ms`);
  });
  for (const o of outcomes) console.log(`  ${o}`);
});

test.run();
