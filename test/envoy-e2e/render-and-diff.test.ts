// Real Envoy judges meshkey's Envoy-native outputs:
// (a) `envoy --mode validate` accepts every `meshkey bootstrap --role` output, every
//     `meshkey render --format bootstrap` output and every bootstrap in fixtures/;
// (b) a rendered static bootstrap runs under `envoy -c`, gets its certificates over
//     SDS and carries mTLS traffic to a dynamic sidecar;
// (c) `meshkey diff` of `meshkey render` against a live sidecar's /config_dump is
//     empty, and names the change once the mesh changed under the live Envoy.
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detectConfigKind, parseConfigText, validateEnvoyConfig } from "../../src/envoy/index.js";
import { envoySuite, freePort, startEnvoy, validateWithEnvoy, type EnvoyProcess } from "../support/envoy.js";
import { createMeshWorld, httpGet, meshkeyCli, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("render-and-diff");

const tmp = mkdtempSync(join(tmpdir(), "meshkey-render-e2e-"));
const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });

function expectEnvoyAccepts(file: string): void {
  const r = validateWithEnvoy(file);
  assert.ok(r.ok, `envoy --mode validate rejected ${file} (status ${r.status}):\n${r.output.split("\n").slice(-30).join("\n")}`);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/**
 * Fixture files that are complete Envoy bootstraps: meshkey's validator accepts them
 * as a bootstrap and they name their node. (fixtures/envoy/seeds-slide-cluster-v3.yaml
 * is the seeds' slide, one cluster without a node: Envoy refuses SDS without a node
 * id and cluster, so it is an input fragment, not a bootstrap to run.)
 */
function fixtureBootstraps(): string[] {
  return filesUnder("fixtures")
    .filter((f) => /\.(json|ya?ml)$/.test(f))
    .filter((f) => {
      let input: unknown;
      try {
        input = parseConfigText(readFileSync(f, "utf8"), f);
      } catch {
        return false;
      }
      if (detectConfigKind(input) !== "bootstrap" || validateEnvoyConfig(input).issues.length > 0) return false;
      return typeof (input as { node?: { id?: unknown } }).node?.id === "string";
    })
    .sort();
}

test("(a) envoy --mode validate accepts every `meshkey bootstrap --role` output", () => {
  const roles: Array<[string, string[]]> = [
    ["sidecar", ["--role", "sidecar", "--node-id", "sidecar~127.44.0.1~httpbin-0.foo~foo.svc.cluster.local", "--namespace", "foo", "--service-account", "httpbin"]],
    ["sidecar-xds-tls", ["--role", "sidecar", "--node-id", "sidecar~127.44.0.2~sleep-0.bar~bar.svc.cluster.local", "--namespace", "bar", "--service-account", "sleep", "--xds-tls"]],
    ["pilot", ["--role", "pilot", "--node-id", "pilot~127.44.0.3~istiod-0.istio-system~istio-system.svc.cluster.local"]],
    ["ingress", ["--role", "ingress", "--node-id", "router~127.44.0.4~ingress-0.istio-system~istio-system.svc.cluster.local"]],
    ["mixer-like", ["--role", "mixer-like", "--node-id", "sidecar~127.44.0.5~mixer-0.istio-system~istio-system.svc.cluster.local"]],
  ];
  for (const [name, args] of roles) {
    const file = join(tmp, `bootstrap-${name}.json`);
    meshkeyCli(["bootstrap", ...args, "-o", file]);
    expectEnvoyAccepts(file);
  }
});

test("(a) envoy --mode validate accepts every `meshkey render --format bootstrap` output", () => {
  const meshes = readdirSync("fixtures/mesh").filter((f) => f.endsWith(".yaml"));
  let count = 0;
  for (const args of [[], ...meshes.map((m) => ["--mesh", join("fixtures/mesh", m)]), ["--sds-mode", "envoy_grpc"]]) {
    const out = join(tmp, `static-${count}`);
    meshkeyCli(["render", "--format", "bootstrap", "--out", out, ...args]);
    for (const f of readdirSync(out)) {
      expectEnvoyAccepts(join(out, f));
      count++;
    }
  }
  assert.ok(count >= 8, `validated ${count} rendered bootstraps`);
});

test("(a) envoy --mode validate accepts every bootstrap golden file in fixtures/", () => {
  const files = fixtureBootstraps();
  assert.ok(files.some((f) => f.startsWith("fixtures/bootstrap/")), `bootstraps found: ${files.join(", ")}`);
  assert.ok(files.some((f) => f.startsWith("fixtures/mesh/golden/")), `bootstraps found: ${files.join(", ")}`);
  assert.ok(files.includes("fixtures/envoy/static-bootstrap.json"), `bootstraps found: ${files.join(", ")}`);
  for (const f of files) expectEnvoyAccepts(f);
});

// (b) and (c) share one mesh: sleep.foo and httpbin.bar with dynamic sidecars,
// client.baz run from a rendered static bootstrap.
let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;
let client: Workload;
let workloads: Workload[];

test.before(async () => {
  world = await createMeshWorld({ subnet: 43 });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  client = await world.workload({ name: "client", namespace: "baz", port: 9000 });
  // The node `meshkey render` writes for sleep's service: pod sleep-0.
  sleepW.nodeId = `sidecar~${sleepW.podIp}~sleep-0.foo~foo.svc.cluster.local`;
  workloads = [sleepW, httpbinW, client];
  world.writeMesh(workloads);
  await world.startApp(httpbinW);
  sleep = await world.startSidecar(sleepW);
  httpbin = await world.startSidecar(httpbinW);
  await waitForSidecarSynced(sleep.envoy, 3);
  await waitForSidecarSynced(httpbin.envoy, 3);
});

test.after(async () => {
  await world?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const sds = () => world.serve.sds!.replace(/^unix:/, "");

test("(b) a rendered static bootstrap runs under envoy -c: /ready, certificates over SDS, mTLS to a dynamic sidecar", async () => {
  const out = join(tmp, "static-run");
  const adminPort = await freePort();
  meshkeyCli(["render", "--format", "bootstrap", "--mesh", world.meshFile, "--sds-socket", sds(), "--token-path", client.tokenPath, "--admin-port", String(adminPort), "--out", out]);
  let envoy: EnvoyProcess | undefined;
  try {
    envoy = await startEnvoy({ config: join(out, "sidecar-client-0.baz.json"), adminPort, name: "static client.baz" });
    assert.is((await envoy.admin("/ready")).status, 200);
    await envoy.waitForStat("sds.default.update_success", (v) => v >= 1);
    await envoy.waitForStat("sds.ROOTCA.update_success", (v) => v >= 1);
    assert.is(await envoy.stat("cluster_manager.cds.update_attempt"), 0, "a static bootstrap has no CDS");
    const dump = await envoy.configDump();
    const listeners = dump.configs.find((c) => c["@type"].endsWith("ListenersConfigDump")) as { static_listeners?: unknown[] };
    assert.ok((listeners.static_listeners?.length ?? 0) >= 3, "outbound listeners for every service port and an inbound one");
    const res = await envoy.waitFor("a 200 from httpbin.bar through the static Envoy", async () => {
      const r = await httpGet(client.podIp, 8000, "httpbin.bar.svc.cluster.local:8000");
      return r.status === 200 ? r : undefined;
    });
    assert.is(JSON.parse(res.body).service, "httpbin.bar");
    const cluster = "cluster.outbound|8000||httpbin.bar.svc.cluster.local";
    assert.ok((await envoy.stat(`${cluster}.ssl.handshake`)) >= 1, "mTLS handshake to httpbin's sidecar");
  } finally {
    await envoy?.stop();
  }
});

async function liveDump(envoy: EnvoyProcess, query: string, file: string): Promise<string> {
  const { status, body } = await envoy.admin(`/config_dump${query}`);
  assert.is(status, 200);
  writeFileSync(file, body);
  return file;
}

test("(c) meshkey diff of the render and the live sidecar's /config_dump exits 0; after a mesh change it exits 1 naming the change", async () => {
  const w = sleep.workload;
  const renderOut = join(tmp, "dump-before");
  meshkeyCli(["render", "--mesh", world.meshFile, "--sds-socket", sds(), "--token-path", w.tokenPath, "--out", renderOut]);
  const rendered = join(renderOut, "sidecar-sleep-0.foo.json");

  for (const query of ["", "?include_eds"]) {
    const live = await liveDump(sleep.envoy, query, join(tmp, `live${query ? "-eds" : ""}.json`));
    const d = meshkey("diff", rendered, live);
    assert.is(d.status, 0, `diff against /config_dump${query}:\n${d.stdout}${d.stderr}`);
    assert.match(d.stdout, /no differences/);
    const v = meshkey("validate", live);
    assert.is(v.status, 0, v.stdout + v.stderr);
  }

  const extra = await world.workload({ name: "extra", namespace: "bar" });
  world.writeMesh([...workloads, extra]);
  const vhost = "extra.bar.svc.cluster.local:8000";
  await sleep.envoy.waitFor("the new service's cluster, endpoints and virtual host in the live config", async () => {
    const body = (await sleep.envoy.admin("/config_dump?include_eds")).body;
    return body.includes(`"cluster_name": "outbound|8000||extra.bar.svc.cluster.local"`) && body.includes(`"name": "${vhost}"`);
  });
  const live = await liveDump(sleep.envoy, "?include_eds", join(tmp, "live-after.json"));
  const d = meshkey("diff", rendered, live);
  assert.is(d.status, 1, d.stdout + d.stderr);
  assert.match(d.stdout, /^Cluster\/outbound\|8000\|\|extra\.bar\.svc\.cluster\.local: only in B$/m);
  assert.match(d.stdout, /^ClusterLoadAssignment\/outbound\|8000\|\|extra\.bar\.svc\.cluster\.local: only in B$/m);
  assert.match(d.stdout, new RegExp(`^RouteConfiguration/8000\\n {2}virtual_hosts\\[name=${vhost.replace(/\./g, "\\.")}\\]: \\(absent\\) → `, "m"));

  // Rendered again from the changed mesh, it matches the live Envoy again.
  const again = join(tmp, "dump-after");
  meshkeyCli(["render", "--mesh", world.meshFile, "--sds-socket", sds(), "--token-path", w.tokenPath, "--out", again]);
  const same = meshkey("diff", join(again, "sidecar-sleep-0.foo.json"), live);
  assert.is(same.status, 0, same.stdout + same.stderr);
});

test("(c) the meshkey admin's /debug/config_dump is the same ConfigDump as the live Envoy's", async () => {
  const w = sleep.workload;
  const res = await fetch(`http://${world.serve.admin}/debug/config_dump?node=${encodeURIComponent(w.nodeId)}`);
  assert.is(res.status, 200);
  const file = join(tmp, "debug-dump.json");
  writeFileSync(file, await res.text());
  const live = await liveDump(sleep.envoy, "?include_eds", join(tmp, "live-debug.json"));
  const d = meshkey("diff", file, live);
  assert.is(d.status, 0, d.stdout + d.stderr);
});

test.run();
