// The seeds' sample mesh: httpbin (8000, HTTP) and sleep (80, HTTP) in foo and bar,
// each with its own service account. Each workload has its own loopback address
// (Linux routes all of 127/8 to lo), so sidecars can bind <ip>:<service port>
// while the application listens on <ip>:<service port + 10000>.
import { parseMesh } from "./parse-mesh.js";
import type { MeshModel } from "./model.js";

export const defaultMeshYaml = `# meshkey's built-in sample mesh (the seeds' httpbin + sleep in foo and bar)
namespaces:
  - {name: foo, mtls: STRICT}
  - {name: bar, mtls: STRICT}
services:
  - name: httpbin
    namespace: foo
    serviceAccount: httpbin
    ports: [{name: http, port: 8000, protocol: HTTP}]
    endpoints: [{address: 127.0.1.1, port: 18000}]
  - name: sleep
    namespace: foo
    serviceAccount: sleep
    ports: [{name: http, port: 80, protocol: HTTP}]
    endpoints: [{address: 127.0.1.2, port: 10080}]
  - name: httpbin
    namespace: bar
    serviceAccount: httpbin
    ports: [{name: http, port: 8000, protocol: HTTP}]
    endpoints: [{address: 127.0.2.1, port: 18000}]
  - name: sleep
    namespace: bar
    serviceAccount: sleep
    ports: [{name: http, port: 80, protocol: HTTP}]
    endpoints: [{address: 127.0.2.2, port: 10080}]
`;

export const defaultMesh: MeshModel = parseMesh(defaultMeshYaml, "<built-in sample mesh>");
