// The mesh file: validation errors name the file, the line and the field path;
// defaults are filled in; the built-in sample is the seeds' mesh.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultMesh, loadMeshFile, MeshError, parseMesh } from "../../src/mesh/index.js";

const svc = (extra: string) => `services:
  - name: httpbin
    namespace: foo
    ports: [{name: http, port: 8000, protocol: HTTP}]
${extra}`;

const cases: Array<{ name: string; yaml: string; line: number | undefined; path: string; detail: RegExp }> = [
  {
    name: "a port that is not an integer",
    yaml: "services:\n  - name: a\n    namespace: foo\n    ports: [{port: 1, protocol: HTTP}]\n  - name: b\n    namespace: foo\n    ports:\n      - port: eighty\n",
    line: 8,
    path: "services[1].ports[0].port",
    detail: /must be integer/,
  },
  { name: "a missing namespace", yaml: "services:\n  - name: a\n    ports: [{port: 1}]\n", line: 2, path: "services[0].namespace", detail: /is required/ },
  { name: "an unknown protocol", yaml: "services:\n  - name: a\n    namespace: foo\n    ports: [{port: 1, protocol: UDP}]\n", line: 4, path: "services[0].ports[0].protocol", detail: /one of HTTP, GRPC, TCP/ },
  { name: "a port out of range", yaml: svc("    endpoints: [{address: 10.0.0.1, port: 70000}]\n"), line: 5, path: "services[0].endpoints[0].port", detail: /<= 65535/ },
  { name: "an address that is not an IP", yaml: svc("    endpoints:\n      - address: httpbin.local\n"), line: 6, path: "services[0].endpoints[0].address", detail: /IPv4 or IPv6/ },
  { name: "an unknown key", yaml: svc("    replicas: 3\n"), line: 5, path: "services[0].replicas", detail: /unknown key/ },
  { name: "an unknown mTLS mode", yaml: "namespaces:\n  - name: foo\n    mtls: OPTIONAL\n", line: 3, path: "namespaces[0].mtls", detail: /STRICT, PERMISSIVE, DISABLE/ },
  { name: "a duplicate service", yaml: svc("  - name: httpbin\n    namespace: foo\n    ports: [{port: 1}]\n"), line: 5, path: "services[1].name", detail: /duplicate service "httpbin"/ },
  { name: "a duplicate port", yaml: "services:\n  - name: a\n    namespace: foo\n    ports:\n      - {port: 80, name: x}\n      - {port: 80, name: y}\n", line: 6, path: "services[0].ports[1].port", detail: /duplicate port 80/ },
  { name: "an endpoint port for a port the service lacks", yaml: svc("    endpoints: [{address: 10.0.0.1, ports: {grpc: 9000}}]\n"), line: 5, path: "services[0].endpoints[0].ports.grpc", detail: /no port named "grpc"/ },
  { name: "broken YAML", yaml: "services:\n  - name: a\n   namespace: [\n", line: 3, path: "", detail: /YAML/ },
  { name: "a map used as a mapping key", yaml: "namespaces:\n  - {name: foo}\n? {name: x}\n: 1\n", line: 3, path: "", detail: /mapping key must be a plain value/ },
];

for (const c of cases) {
  test(`mesh validation reports ${c.name} with file, line and path`, () => {
    try {
      parseMesh(c.yaml, "mesh.yaml");
      assert.unreachable("parseMesh accepted an invalid mesh");
    } catch (err) {
      assert.instance(err, MeshError);
      const e = err as MeshError;
      assert.is(e.file, "mesh.yaml");
      assert.is(e.line, c.line, e.message);
      assert.is(e.path, c.path, e.message);
      assert.match(e.detail, c.detail);
      const prefix = `mesh.yaml${c.line !== undefined ? `:${c.line}` : ""}: ${c.path ? `${c.path}: ` : ""}`;
      assert.ok(e.message.startsWith(prefix), e.message);
    }
  });
}

test("optional keys get their defaults (service account, protocol, weight, locality, STRICT)", () => {
  const m = parseMesh("services:\n  - name: a\n    namespace: ns\n    ports: [{port: 9000}]\n    endpoints: [{address: 10.0.0.1}]\n");
  assert.equal(m.namespaces, [{ name: "ns", mtls: "STRICT" }]);
  const s = m.services[0]!;
  assert.is(s.serviceAccount, "default");
  assert.is(s.host, "a.ns.svc.cluster.local");
  assert.equal(s.ports, [{ name: "tcp-9000", port: 9000, protocol: "TCP" }]);
  assert.equal(s.endpoints[0], { address: "10.0.0.1", port: 9000, ports: {}, weight: 1, locality: { region: "", zone: "", subZone: "" } });
});

test("the built-in sample is httpbin (8000 HTTP) and sleep (80 HTTP) in foo and bar, each with its own service account", () => {
  const got = defaultMesh.services.map((s) => `${s.namespace}/${s.name} sa=${s.serviceAccount} ${s.ports.map((p) => `${p.port}/${p.protocol}`).join(",")}`);
  assert.equal(got, ["bar/httpbin sa=httpbin 8000/HTTP", "bar/sleep sa=sleep 80/HTTP", "foo/httpbin sa=httpbin 8000/HTTP", "foo/sleep sa=sleep 80/HTTP"]);
});

test("loadMeshFile names the file in its errors, including a missing file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "meshkey-mesh-"));
  try {
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "services:\n  - name: a\n    namespace: foo\n    ports: [{port: 0}]\n");
    await loadMeshFile(file).then(
      () => assert.unreachable(),
      (e: Error) => assert.match(e.message, `${file}:4: services[0].ports[0].port: must be >= 1`),
    );
    await loadMeshFile(join(dir, "missing.yaml")).then(
      () => assert.unreachable(),
      (e: Error) => assert.match(e.message, /missing\.yaml: cannot read/),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
