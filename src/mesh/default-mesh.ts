// The seeds' sample mesh: httpbin (8000, HTTP) and sleep (80, HTTP) in foo and bar,
// each with its own service account. Each workload has its own loopback pod IP
// (Linux routes all of 127/8 to lo): its sidecar binds <pod IP>:<workload port>
// (inbound) and <pod IP>:<service port> (outbound), and hands inbound traffic to
// the app on 127.0.0.1:<workload port>, so every workload port is distinct.
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
    endpoints: [{address: 127.0.1.1, port: 18001}]
  - name: sleep
    namespace: foo
    serviceAccount: sleep
    ports: [{name: http, port: 80, protocol: HTTP}]
    endpoints: [{address: 127.0.1.2, port: 10081}]
  - name: httpbin
    namespace: bar
    serviceAccount: httpbin
    ports: [{name: http, port: 8000, protocol: HTTP}]
    endpoints: [{address: 127.0.2.1, port: 18002}]
  - name: sleep
    namespace: bar
    serviceAccount: sleep
    ports: [{name: http, port: 80, protocol: HTTP}]
    endpoints: [{address: 127.0.2.2, port: 10082}]
`;

export const defaultMesh: MeshModel = parseMesh(defaultMeshYaml, "<built-in sample mesh>");
