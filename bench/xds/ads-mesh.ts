// The mesh and the sidecars of `npm run bench -- ads`, shared by the exporter, the
// meshkey server child and the load client, so that every side agrees on them.
//
// Mesh: S services in 10 namespaces, 2 endpoints each, one port each (even services
// HTTP 8080, odd services GRPC 7070), STRICT mTLS. Generation B adds one HTTP service in
// ns-0 (a new cluster, a new EDS resource, a new virtual host in route "8080"; no listener
// changes, since port 8080 already has its outbound listener).
//
// Sidecars: sidecar i fronts service i % S, as pod `<service>-<i>` at its own loopback
// address 127.16.0.0 + i (also the source address of its connection), with the node
// `meshkey bootstrap --role sidecar` writes (ROLE, NAMESPACE, SERVICE_ACCOUNT, TRUST_DOMAIN,
// SPIFFE_ID, SDS_SOCKET, SDS_TOKEN_PATH; every pod has the same paths, as in Kubernetes).
import type { NodeInfo } from "../../src/mesh/index.js";
import { DEFAULT_SDS_SOCKET, spiffeIdOf } from "../../src/spiffe/index.js";

export const NAMESPACES = 10;
export const TRUST_DOMAIN = "cluster.local";
export const SDS_SOCKET = DEFAULT_SDS_SOCKET;
export const TOKEN_PATH = "/var/run/secrets/tokens/istio-token";
export const TRANSLATE = { trustDomain: TRUST_DOMAIN, sdsSocketPath: SDS_SOCKET, tokenPath: TOKEN_PATH };

export const TYPE = {
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
} as const;
/** Order of the types in the export files (and in the Go peer). */
export const TYPES = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route] as const;

interface Svc {
  name: string;
  namespace: string;
  port: number;
  protocol: "HTTP" | "GRPC";
  endpoints: string[];
}

const svcName = (i: number) => `svc-${String(i).padStart(4, "0")}`;

const service = (i: number): Svc => ({
  name: svcName(i),
  namespace: `ns-${i % NAMESPACES}`,
  port: i % 2 === 0 ? 8080 : 7070,
  protocol: i % 2 === 0 ? "HTTP" : "GRPC",
  endpoints: [0, 1].map((e) => `10.${(i >> 8) & 255}.${i & 255}.${e + 1}`),
});
const services = (count: number): Svc[] => Array.from({ length: count }, (_, i) => service(i));

/** The service generation B adds. */
export const NEW_SERVICE: Svc = { name: "svc-new", namespace: "ns-0", port: 8080, protocol: "HTTP", endpoints: ["10.255.255.1", "10.255.255.2"] };
export const NEW_SERVICE_HOST = `${NEW_SERVICE.name}.${NEW_SERVICE.namespace}.svc.cluster.local`;

function yamlOf(list: Svc[]): string {
  const lines = ["services:"];
  for (const s of list) {
    lines.push(
      `  - name: ${s.name}`,
      `    namespace: ${s.namespace}`,
      `    serviceAccount: ${s.name}`,
      `    ports: [{name: ${s.protocol.toLowerCase()}, port: ${s.port}, protocol: ${s.protocol}}]`,
      "    endpoints:",
      ...s.endpoints.map((a) => `      - {address: ${a}, port: ${s.port}}`),
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Mesh file text of generation A (S services) or B (A plus NEW_SERVICE). */
export function meshYaml(servicesCount: number, generation: "A" | "B"): string {
  const list = services(servicesCount);
  return yamlOf(generation === "A" ? list : [...list, NEW_SERVICE]);
}

export function sidecarIp(i: number): string {
  const n = (16 << 16) + i; // 127.16.0.0 + i
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

/** Node of sidecar i of n, on a mesh of S services. */
export function sidecarNode(i: number, servicesCount: number): NodeInfo {
  const s = service(i % servicesCount);
  const pod = `${s.name}-${i}`;
  return {
    id: `sidecar~${sidecarIp(i)}~${pod}.${s.namespace}~${s.namespace}.svc.cluster.local`,
    cluster: `${s.name}.${s.namespace}`,
    metadata: {
      ROLE: "sidecar",
      NAMESPACE: s.namespace,
      SERVICE_ACCOUNT: s.name,
      TRUST_DOMAIN,
      SPIFFE_ID: spiffeIdOf(TRUST_DOMAIN, { namespace: s.namespace, serviceAccount: s.name }),
      SDS_SOCKET,
      SDS_TOKEN_PATH: TOKEN_PATH,
    },
  };
}

/** Index of the service sidecar i fronts. */
export const serviceOf = (i: number, servicesCount: number) => i % servicesCount;
