// `meshkey diff` with a live Envoy's admin URL as one side: meshkey fetches
// /config_dump?include_eds itself. A render of the mesh the sidecar runs diffs clean
// against it; after a mesh change the diff names the field that changed.
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { envoySuite } from "../support/envoy.js";
import { createMeshWorld, meshkeyCli, waitForSidecarSynced, type MeshWorld, type Sidecar, type Workload } from "../support/mesh-world.js";

const test = envoySuite("diff-live-envoy");

const tmp = mkdtempSync(join(tmpdir(), "meshkey-diff-live-"));
const meshkey = (...args: string[]) => spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });

let world: MeshWorld;
let sleep: Sidecar;
let workloads: Workload[];

test.before(async () => {
  world = await createMeshWorld({ subnet: 101 });
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  // The node `meshkey render` writes for sleep's service: pod sleep-0.
  sleepW.nodeId = `sidecar~${sleepW.podIp}~sleep-0.foo~foo.svc.cluster.local`;
  workloads = [sleepW, httpbinW];
  world.writeMesh(workloads);
  sleep = await world.startSidecar(sleepW);
  await waitForSidecarSynced(sleep.envoy, 2);
});

test.after(async () => {
  await world?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const adminUrl = () => `http://127.0.0.1:${sleep.envoy.adminPort}`;

function render(out: string): string {
  const sds = world.serve.sds!.replace(/^unix:/, "");
  meshkeyCli(["render", "--mesh", world.meshFile, "--sds-socket", sds, "--token-path", sleep.workload.tokenPath, "--out", out]);
  return join(out, "sidecar-sleep-0.foo.json");
}

test("a render of the mesh diffs clean against the live Envoy's admin URL, on either side", () => {
  const rendered = render(join(tmp, "before"));
  const ab = meshkey("diff", rendered, adminUrl());
  assert.is(ab.status, 0, ab.stdout + ab.stderr);
  assert.match(ab.stdout, /no differences/);
  const ba = meshkey("diff", adminUrl(), rendered);
  assert.is(ba.status, 0, ba.stdout + ba.stderr);
});

test("after a mesh change, the diff against the live admin URL shows the changed endpoint port", async () => {
  const rendered = render(join(tmp, "stale"));
  const httpbin = workloads[1]!;
  const oldPort = httpbin.workloadPort;
  const newPort = oldPort === 65535 ? oldPort - 1 : oldPort + 1;
  world.writeMesh([workloads[0]!, { ...httpbin, workloadPort: newPort }]);
  await sleep.envoy.waitFor("httpbin's new endpoint port in the live config", async () => {
    const body = (await sleep.envoy.admin("/config_dump?include_eds")).body;
    return body.includes(`"port_value": ${newPort}`);
  });
  const d = meshkey("diff", rendered, adminUrl());
  assert.is(d.status, 1, d.stdout + d.stderr);
  assert.match(d.stdout, /^ClusterLoadAssignment\/outbound\|8000\|\|httpbin\.bar\.svc\.cluster\.local$/m);
  assert.match(d.stdout, new RegExp(`port_value: ${oldPort} → ${newPort}$`, "m"));
});

test("an admin URL nobody listens on is an error (exit 2) naming it", () => {
  const d = meshkey("diff", join(tmp, "before", "sidecar-sleep-0.foo.json"), "http://127.0.0.1:9/");
  assert.is(d.status, 2, d.stdout + d.stderr);
  assert.match(d.stderr, /cannot reach Envoy's admin at http:\/\/127\.0\.0\.1:9/);
});

test.run();
