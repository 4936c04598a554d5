// The verbs work together: what `meshkey render` writes (an Envoy ConfigDump, the
// form of /debug/config_dump too, or a static bootstrap) is what `meshkey validate`
// checks and `meshkey diff` compares.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "meshkey-rvd-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
type Dump = { configs: Array<Record<string, any>> };
const section = (d: Dump, t: string) => d.configs.find((c) => c["@type"] === `type.googleapis.com/envoy.admin.v3.${t}ConfigDump`)!;

test("every rendered config dump validates, a broken field is named by its path, and two nodes diff by resource", () => {
  const out = join(dir, "render");
  const r = meshkey("render", "--out", out);
  assert.is(r.status, 0, r.stderr);
  const files = readdirSync(out).map((f) => join(out, f));
  assert.ok(files.length >= 5, `rendered ${files.length} files`);

  const ok = meshkey("validate", ...files);
  assert.is(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /sidecar-sleep-0\.foo\.json: valid config_dump/);

  const sleepFoo = files.find((f) => f.endsWith("sidecar-sleep-0.foo.json"))!;
  const doc = JSON.parse(readFileSync(sleepFoo, "utf8")) as Dump;
  section(doc, "Clusters").dynamic_active_clusters[0].cluster.name = "";
  const broken = join(dir, "broken.json");
  writeFileSync(broken, JSON.stringify(doc));
  const bad = meshkey("validate", broken);
  assert.is(bad.status, 1);
  assert.match(bad.stdout + bad.stderr, /configs\[1\]\.dynamic_active_clusters\[0\]\.cluster\.name: /);

  const same = meshkey("diff", sleepFoo, sleepFoo);
  assert.is(same.status, 0, same.stdout + same.stderr);
  const d = meshkey("diff", sleepFoo, files.find((f) => f.endsWith("sidecar-sleep-0.bar.json"))!);
  assert.is(d.status, 1, d.stderr);
  assert.match(d.stdout, /^Listener\/inbound_.* only in A$/m);
});

test("every rendered bootstrap validates as a bootstrap", () => {
  const out = join(dir, "static");
  assert.is(meshkey("render", "--format", "bootstrap", "--out", out).status, 0);
  const r = meshkey("validate", ...readdirSync(out).map((f) => join(out, f)));
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /sidecar-httpbin-0\.foo\.json: valid bootstrap/);
});

test("diff against a dump ignores what only a live Envoy has: last_updated, version_info, warming, the bootstrap's xds-grpc cluster and admin", () => {
  const out = join(dir, "live");
  assert.is(meshkey("render", "--out", out).status, 0);
  const rendered = join(out, "sidecar-httpbin-0.foo.json");
  const live = JSON.parse(readFileSync(rendered, "utf8")) as Dump;
  const xds = {
    "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    name: "xds-grpc",
    type: "STATIC",
    connect_timeout: "1s",
    load_assignment: { cluster_name: "xds-grpc", endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 15010 } } } }] }] },
  };
  const { "@type": _t, ...xdsCluster } = xds;
  const boot = section(live, "Bootstrap");
  boot.bootstrap = {
    ...boot.bootstrap,
    node: { ...boot.bootstrap.node, user_agent_name: "envoy" },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: 15000 } } },
    static_resources: { clusters: [xdsCluster] },
    dynamic_resources: { ads_config: { api_type: "GRPC", transport_api_version: "V3", grpc_services: [{ envoy_grpc: { cluster_name: "xds-grpc" } }] } },
  };
  boot.last_updated = "2026-01-01T00:00:00Z";
  const clusters = section(live, "Clusters");
  clusters.version_info = "live-7";
  clusters.static_clusters = [{ cluster: xds, last_updated: "2026-01-01T00:00:00Z" }];
  for (const c of clusters.dynamic_active_clusters) Object.assign(c, { version_info: "live-7", last_updated: "2026-01-01T00:00:00Z" });
  clusters.dynamic_warming_clusters = [{ version_info: "live-8", cluster: { ...clusters.dynamic_active_clusters[0].cluster, connect_timeout: "3s" } }];
  for (const s of section(live, "Secrets").dynamic_active_secrets) s.version_info = "1";
  const livePath = join(dir, "live.json");
  writeFileSync(livePath, JSON.stringify(live));
  const same = meshkey("diff", rendered, livePath);
  assert.is(same.status, 0, same.stdout + same.stderr);

  section(live, "Listeners").dynamic_listeners[0].active_state.listener.per_connection_buffer_limit_bytes = 4096;
  writeFileSync(livePath, JSON.stringify(live));
  const changed = meshkey("diff", rendered, livePath);
  assert.is(changed.status, 1, changed.stdout + changed.stderr);
  assert.match(changed.stdout, /^ {2}per_connection_buffer_limit_bytes: \(absent\) → 4096$/m);
});

test("diff exits 2 on an unreadable or invalid side", () => {
  const r = meshkey("diff", join(dir, "nope.json"), join(dir, "nope.json"));
  assert.is(r.status, 2);
});

test.run();
