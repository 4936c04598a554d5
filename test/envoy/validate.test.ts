// The validator: strict proto3 JSON, PGV rules by reflection, cross-references.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create } from "@bufbuild/protobuf";
import { readFileSync } from "node:fs";
import { ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { parseConfigText, validateEnvoyConfig, validateMessage, type ValidationIssue } from "../../src/envoy/index.js";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const base = (): Json => JSON.parse(readFileSync("fixtures/envoy/static-bootstrap.json", "utf8"));
const HCM = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
const VHOST = `${HCM}.route_config.virtual_hosts[0]`;
const hcm = (b: Json) => b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const vhost = (b: Json) => hcm(b).route_config.virtual_hosts[0];
const tcp = (b: Json) => b.static_resources.listeners[1].filter_chains[0].filters[0].typed_config;
const cluster = (b: Json) => b.static_resources.clusters[0];
const sdsOf = (b: Json) => cluster(b).transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0];

function issuesOf(input: unknown): ValidationIssue[] {
  return validateEnvoyConfig(input).issues;
}

test("the base static bootstrap is valid", () => {
  const r = validateEnvoyConfig(base());
  assert.equal(r.issues, []);
  assert.is(r.kind, "bootstrap");
});

// One invalid config per rule family: the mutation, then the expected path and message.
const cases: { name: string; mutate: (b: Json) => void; path: string; message: string | RegExp }[] = [
  {
    name: "required message (route.match)",
    mutate: (b) => delete vhost(b).routes[0].match,
    path: `${VHOST}.routes[0].match`,
    message: "is required",
  },
  {
    name: "string min_len (tcp_proxy stat_prefix)",
    mutate: (b) => (tcp(b).stat_prefix = ""),
    path: "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.stat_prefix",
    message: "length must be at least 1 characters",
  },
  {
    name: "pattern (path_separated_prefix)",
    mutate: (b) => (vhost(b).routes[0].match = { path_separated_prefix: "/api/" }),
    path: `${VHOST}.routes[0].match.path_separated_prefix`,
    message: 'does not match regex pattern "^[^?#]+[^?#/]$"',
  },
  {
    name: "numeric gt on a wrapper (max_connections_to_accept_per_socket_event)",
    mutate: (b) => (b.static_resources.listeners[0].max_connections_to_accept_per_socket_event = 0),
    path: "static_resources.listeners[0].max_connections_to_accept_per_socket_event",
    message: "must be greater than 0",
  },
  {
    name: "numeric range (max_request_headers_kb)",
    mutate: (b) => (hcm(b).max_request_headers_kb = 9000),
    path: `${HCM}.max_request_headers_kb`,
    message: "must be inside range (0, 8192]",
  },
  {
    name: "duration gt (connect_timeout)",
    mutate: (b) => (cluster(b).connect_timeout = "0s"),
    path: "static_resources.clusters[0].connect_timeout",
    message: "must be greater than 0s",
  },
  {
    name: "repeated min_items (virtual host domains)",
    mutate: (b) => (vhost(b).domains = []),
    path: `${VHOST}.domains`,
    message: "must contain at least 1 item(s)",
  },
  {
    name: "repeated item rule (header names to remove)",
    mutate: (b) => (vhost(b).request_headers_to_remove = ["x-ok", ""]),
    path: `${VHOST}.request_headers_to_remove[1]`,
    message: "length must be at least 1 characters",
  },
  {
    name: "enum defined_only (lb_policy 42)",
    mutate: (b) => (cluster(b).lb_policy = 42),
    path: "static_resources.clusters[0].lb_policy",
    message: "must be one of the defined enum values (got 42)",
  },
  {
    name: "enum not_in (san_type SAN_TYPE_UNSPECIFIED)",
    mutate: (b) =>
      (cluster(b).transport_socket.typed_config.common_tls_context.validation_context = {
        match_typed_subject_alt_names: [{ san_type: "SAN_TYPE_UNSPECIFIED", matcher: { exact: "spiffe://x" } }],
      }),
    path: "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[0].san_type",
    message: "must not be in list [0]",
  },
  {
    name: "required oneof (route action without a cluster)",
    mutate: (b) => (vhost(b).routes[0].route = { timeout: "1s" }),
    path: `${VHOST}.routes[0].route.cluster_specifier`,
    message: /^is required: set one of cluster, cluster_header, weighted_clusters/,
  },
  {
    name: "unknown @type",
    mutate: (b) => (hcm(b)["@type"] = "type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope"),
    path: HCM,
    message: 'unknown @type "type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope"',
  },
  {
    name: "unknown field",
    mutate: (b) => (cluster(b).conect_timeout = "1s"),
    path: "static_resources.clusters[0].conect_timeout",
    message: 'unknown field "conect_timeout" in envoy.config.cluster.v3.Cluster',
  },
  {
    name: "wrong JSON type for a scalar",
    mutate: (b) => (b.static_resources.listeners[1].address.socket_address.port_value = "ninety"),
    path: "static_resources.listeners[1].address.socket_address.port_value",
    message: 'expected number (uint32), got "ninety"',
  },
  {
    name: "dangling cluster reference (route)",
    mutate: (b) => (vhost(b).routes[0].route.cluster = "nope"),
    path: `${VHOST}.routes[0].route.cluster`,
    message: 'cluster "nope" is not defined (no static cluster has this name)',
  },
  {
    name: "dangling cluster reference (tcp_proxy)",
    mutate: (b) => (tcp(b).cluster = "gone"),
    path: "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster",
    message: 'cluster "gone" is not defined (no static cluster has this name)',
  },
  {
    name: "dangling cluster reference (envoy_grpc, even with CDS)",
    mutate: (b) =>
      (b.dynamic_resources = {
        ads_config: { api_type: "GRPC", transport_api_version: "V3", grpc_services: [{ envoy_grpc: { cluster_name: "xds-grpc" } }] },
        cds_config: { ads: {}, resource_api_version: "V3" },
      }),
    path: "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name",
    message: 'cluster "xds-grpc" is not defined (no static cluster has this name)',
  },
  {
    name: "inconsistent SDS config for one secret name",
    mutate: (b) => {
      const other = structuredClone(sdsOf(b));
      other.sds_config.api_config_source.grpc_services[0].google_grpc.target_uri = "unix:/tmp/other.sock";
      cluster(b).transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs.push(other);
    },
    path: "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[1].sds_config",
    message: /^differs from the sds_config for secret "default" at static_resources\.clusters\[0\]\..*tls_certificate_sds_secret_configs\[0\]\.sds_config/,
  },
];

for (const c of cases) {
  test(`invalid: ${c.name} → ${c.path}`, () => {
    const b = base();
    c.mutate(b);
    const issues = issuesOf(b);
    assert.is(issues.length, 1, JSON.stringify(issues, null, 2));
    assert.is(issues[0]!.path, c.path);
    if (typeof c.message === "string") assert.is(issues[0]!.message, c.message);
    else assert.match(issues[0]!.message, c.message);
  });
}

test("several schema errors are all reported, each with its path", () => {
  const b = base();
  cluster(b).bogus = 1;
  tcp(b).alsoBogus = true;
  const paths = issuesOf(b).map((i) => i.path);
  assert.equal(paths.sort(), ["static_resources.clusters[0].bogus", "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.alsoBogus"]);
});

test("lowerCamelCase JSON names are accepted; paths still use proto names", () => {
  const b = base();
  delete cluster(b).connect_timeout;
  cluster(b).connectTimeout = "0s";
  assert.equal(issuesOf(b), [{ path: "static_resources.clusters[0].connect_timeout", message: "must be greater than 0s" }]);
});

test("a route config with validate_clusters: false is not cross-checked", () => {
  const b = base();
  hcm(b).route_config.validate_clusters = false;
  vhost(b).routes[0].route.cluster = "later";
  assert.equal(issuesOf(b), []);
});

test("with CDS in a bootstrap, routes may name clusters that are not static", () => {
  const b = base();
  b.dynamic_resources = { cds_config: { path_config_source: { path: "/etc/envoy/cds.yaml" }, resource_api_version: "V3" } };
  vhost(b).routes[0].route.cluster = "from-cds";
  assert.equal(issuesOf(b), []);
});

test("validateMessage checks a message built in code", () => {
  const c = create(ClusterSchema, { name: "", connectTimeout: { seconds: 0n, nanos: 0 } });
  assert.equal(validateMessage(ClusterSchema, c), [
    { path: "name", message: "length must be at least 1 characters" },
    { path: "connect_timeout", message: "must be greater than 0s" },
  ]);
});

test("a single resource (object with @type) is validated as that type", () => {
  const c = cluster(base());
  const r = validateEnvoyConfig({ "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", ...c, connect_timeout: "-1s" });
  assert.is(r.kind, "resource");
  assert.equal(r.issues, [{ path: "connect_timeout", message: "must be greater than 0s" }]);
});

test("a list of resources: array paths start at the element, references checked within the list", () => {
  const b = base();
  const listener = { "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", ...b.static_resources.listeners[1] };
  const c = { "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", ...cluster(b), name: "other" };
  const r = validateEnvoyConfig([c, listener]);
  assert.is(r.kind, "resources");
  assert.equal(r.issues, [
    { path: "[1].filter_chains[0].filters[0].typed_config.cluster", message: 'cluster "backend" is not defined (no cluster in this list has this name)' },
  ]);
  const wrapped = validateEnvoyConfig({ version_info: "1", resources: [{ ...c, bogus: 1 }] });
  assert.is(wrapped.kind, "resources");
  assert.equal(wrapped.issues.map((i) => i.path), ["resources[0].bogus"]);
});

test("a config_dump resolves route clusters among static and dynamic clusters", () => {
  const b = base();
  const clusterAny = (name: string) => ({ "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", ...cluster(b), name, load_assignment: { ...cluster(b).load_assignment, cluster_name: name } });
  const routeConfig = (clusterName: string) => ({
    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    name: "rds",
    virtual_hosts: [{ name: "vh", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: clusterName } }] }],
  });
  const dump = (clusterName: string) => ({
    configs: [
      { "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", bootstrap: b },
      {
        "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        static_clusters: [{ cluster: clusterAny("backend") }],
        dynamic_active_clusters: [{ version_info: "3", cluster: clusterAny("dyn") }],
      },
      { "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", dynamic_route_configs: [{ version_info: "3", route_config: routeConfig(clusterName) }] },
    ],
  });
  const ok = validateEnvoyConfig(dump("dyn"));
  assert.is(ok.kind, "config_dump");
  assert.equal(ok.issues, []);
  const bad = validateEnvoyConfig(dump("missing"));
  assert.equal(bad.issues, [
    { path: "configs[2].dynamic_route_configs[0].route_config.virtual_hosts[0].routes[0].route.cluster", message: 'cluster "missing" is not defined (no static or dynamic cluster has this name)' },
  ]);
});

test("the seeds' slide cluster (v3, YAML) is a valid bootstrap and round-trips", async () => {
  const { parseEnvoyConfig, canonicalConfigText } = await import("../../src/envoy/index.js");
  const input = parseConfigText(readFileSync("fixtures/envoy/seeds-slide-cluster-v3.yaml", "utf8"), "seeds-slide-cluster-v3.yaml");
  assert.equal(issuesOf(input), []);
  const text = canonicalConfigText(input);
  const again = canonicalConfigText(JSON.parse(text));
  assert.is(again, text);
  const parsed = parseEnvoyConfig(JSON.parse(text));
  const c = (parsed.roots[0]!.message as unknown as { staticResources: { clusters: { name: string }[] } }).staticResources.clusters[0]!;
  assert.is(c.name, "outbound|8000||httpbin.default.svc.cluster.local");
  assert.match(text, /"tls_certificate_sds_secret_configs"/);
  assert.match(text, /"combined_validation_context"/);
  assert.match(text, /istio_sds_credentail_header-bin/);
});

test("identical Any payloads in several places each report their own paths", () => {
  const b = base();
  const tls = cluster(b).transport_socket.typed_config;
  tls.common_tls_context.validation_context = { match_typed_subject_alt_names: [{ san_type: "SAN_TYPE_UNSPECIFIED", matcher: { exact: "x" } }] };
  const second = structuredClone(cluster(b));
  second.name = "backend-2";
  second.load_assignment.cluster_name = "backend-2";
  b.static_resources.clusters.push(second);
  const third = structuredClone(second);
  third.name = "backend-3";
  third.load_assignment.cluster_name = "backend-3";
  third.transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.api_config_source.grpc_services[0].google_grpc.stat_prefix = "other";
  b.static_resources.clusters.push(third);
  for (let round = 0; round < 2; round++) {
    // the second round is served from the payload cache: same answer
    const issues = issuesOf(b);
    const san = "transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[0].san_type";
    assert.equal(
      issues.filter((i) => i.path.endsWith("san_type")).map((i) => i.path),
      [0, 1, 2].map((i) => `static_resources.clusters[${i}].${san}`),
    );
    const sds = issues.filter((i) => i.path.endsWith("sds_config"));
    assert.equal(sds.map((i) => i.path), ["static_resources.clusters[2].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config"]);
    assert.match(sds[0]!.message, /at static_resources\.clusters\[0\]\.transport_socket/);
  }
});

test("input that is not an object is an issue at the root", () => {
  assert.equal(validateEnvoyConfig(42).issues, [{ path: "", message: "expected an object or an array, got number" }]);
});

test.run();
