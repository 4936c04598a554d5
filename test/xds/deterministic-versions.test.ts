// Replicas of the control plane serve the same mesh to the same Envoy: the
// version_info each sends must be a hash of the content, equal across processes
// and independent of what a process served before, so that an Envoy moving from
// one replica to the other sees the same versions and nothing changes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseMesh } from "../../src/mesh/index.js";
import { TypeUrl } from "../../src/xds/index.js";
import { snapshotVersions } from "./helpers/snapshot-versions.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-versions-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const meshYaml = (httpbinAddress: string) => `
services:
  - name: httpbin
    namespace: foo
    serviceAccount: httpbin
    ports: [{name: http, port: 8000, protocol: HTTP}]
    endpoints: [{address: ${httpbinAddress}, port: 18080}]
  - name: sleep
    namespace: foo
    serviceAccount: sleep
    ports: [{name: http, port: 80, protocol: HTTP}]
    endpoints: [{address: 127.75.0.2, port: 18081}]
  - name: grpc-echo
    namespace: bar
    serviceAccount: echo
    ports: [{name: grpc, port: 9090, protocol: GRPC}]
    endpoints: [{address: 127.75.0.3, port: 19090}]
`;
const meshV1 = meshYaml("127.75.0.1");
const meshV2 = meshYaml("127.75.0.9");
const sleepNode = { id: "sidecar~127.75.0.2~sleep-1.foo~foo.svc.cluster.local" };
const ALL_TYPES = [TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route].sort();

function versionsInChildProcess(yaml: string, nodeId: string): Record<string, string> {
  const file = join(dir, `mesh-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  const r = spawnSync(process.execPath, ["--import", "tsx", "test/xds/helpers/snapshot-versions.ts", file, nodeId], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

test("two processes serving the same mesh send the same version of every type", () => {
  const here = snapshotVersions([parseMesh(meshV1)], sleepNode);
  assert.equal(Object.keys(here).sort(), ALL_TYPES);
  const first = versionsInChildProcess(meshV1, sleepNode.id);
  const second = versionsInChildProcess(meshV1, sleepNode.id);
  assert.equal(first, here);
  assert.equal(second, here);
});

test("a replica that served an older mesh first sends the same versions as one started on the new mesh", () => {
  const afterChange = snapshotVersions([parseMesh(meshV1), parseMesh(meshV2)], sleepNode);
  const startedOnNew = snapshotVersions([parseMesh(meshV2)], sleepNode);
  assert.equal(afterChange, startedOnNew);
  // And back again: the version of a mesh does not count the changes in between.
  assert.equal(snapshotVersions([parseMesh(meshV1), parseMesh(meshV2), parseMesh(meshV1)], sleepNode), snapshotVersions([parseMesh(meshV1)], sleepNode));
});

test("the version follows the content: a moved endpoint changes EDS, and leaves LDS and RDS alone", () => {
  const v1 = snapshotVersions([parseMesh(meshV1)], sleepNode);
  const v2 = snapshotVersions([parseMesh(meshV2)], sleepNode);
  assert.is.not(v2[TypeUrl.Endpoint], v1[TypeUrl.Endpoint]);
  assert.is(v2[TypeUrl.Listener], v1[TypeUrl.Listener]);
  assert.is(v2[TypeUrl.Route], v1[TypeUrl.Route]);
});

test("the version a node is sent does not depend on the other nodes a replica happens to serve", () => {
  const alone = snapshotVersions([parseMesh(meshV1)], sleepNode);
  const others = [
    { id: "sidecar~127.75.0.1~httpbin-1.foo~foo.svc.cluster.local" },
    { id: "sidecar~127.75.0.4~sleep-2.foo~foo.svc.cluster.local" },
    { id: "grpc-client-1", metadata: { GENERATOR: "grpc" } },
  ];
  const crowded = snapshotVersions([parseMesh(meshV1), parseMesh(meshV2), parseMesh(meshV1)], sleepNode, others);
  assert.equal(crowded, alone);
});

test.run();
