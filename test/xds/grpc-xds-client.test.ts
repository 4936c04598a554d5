// A real proxyless client: @grpc/grpc-js-xds resolves xds:///echo.foo.svc.cluster.local:7070
// through meshkey's ADS server to a real grpc-js backend, and follows an endpoint
// change written to the watched mesh file. (This file runs in its own process, so
// grpc-js-xds's global registration and cached bootstrap touch nothing else.)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadMeshFile } from "../../src/mesh/index.js";
import { createMeshController, createSnapshotCache, startXdsServer, type MeshController, type RunningXdsServer } from "../../src/xds/index.js";
import { echo, EchoClient, startEchoBackend, type EchoBackend } from "./helpers/echo.js";

const meshYaml = (port: number) => `services:
  - name: echo
    namespace: foo
    serviceAccount: echo
    ports: [{name: grpc, port: 7070, protocol: GRPC}]
    endpoints: [{address: 127.0.0.1, port: ${port}, locality: {region: local, zone: a}}]
`;

let dir: string;
let file: string;
let a: EchoBackend;
let b: EchoBackend;
let server: RunningXdsServer;
let controller: MeshController;
let client: grpc.Client;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshkey-grpc-xds-"));
  file = join(dir, "mesh.yaml");
  a = await startEchoBackend("A");
  b = await startEchoBackend("B");
  writeFileSync(file, meshYaml(a.port));
  const cache = createSnapshotCache();
  controller = createMeshController({
    cache,
    mesh: await loadMeshFile(file),
    meshFile: file,
    translate: { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" },
  });
  server = await startXdsServer({ listen: { host: "127.0.0.1", port: 0 }, cache });
  process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
    xds_servers: [{ server_uri: `127.0.0.1:${server.port}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] }],
    node: { id: "grpc-client-1", locality: {}, metadata: { GENERATOR: "grpc" } },
  });
  createRequire(import.meta.url)("@grpc/grpc-js-xds").register();
  client = new EchoClient("xds:///echo.foo.svc.cluster.local:7070", grpc.credentials.createInsecure());
});

test.after(async () => {
  client?.close();
  controller?.close();
  await server?.close(500);
  await a?.close();
  await b?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("grpc-js-xds resolves the service through meshkey and reaches the backend", async () => {
  assert.is(await echo(client, "hello", 10_000), "A:hello");
  const st = server.syncStatus().find((n) => n.nodeId === "grpc-client-1")!;
  assert.equal(st.types.map((t) => [t.type, t.synced]).sort(), [["CDS", true], ["EDS", true], ["LDS", true], ["RDS", true]]);
});

test("after an endpoint change in the mesh file, the next calls reach the new backend", async () => {
  writeFileSync(file, meshYaml(b.port));
  const end = Date.now() + 10_000;
  let last = "";
  while (Date.now() < end) {
    last = await echo(client, "again");
    if (last.startsWith("B:")) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.is(last, "B:again");
  for (let i = 0; i < 5; i++) assert.is(await echo(client, `n${i}`), `B:n${i}`);
});

test.run();
