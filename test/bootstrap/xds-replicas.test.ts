// Control-plane replicas in the sidecar bootstrap: `--xds-address` takes several
// addresses (comma-separated and/or the flag repeated), each an endpoint of the
// `xds-grpc` cluster, and that cluster is set up to notice a dead replica quickly.
// (test/envoy-e2e/replicas.test.ts proves the failover with real Envoy.)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { renderBootstrap, type BootstrapOptions } from "../../src/bootstrap/index.js";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const xdsCluster = (opts: Partial<BootstrapOptions>): Json => {
  const { text } = renderBootstrap({ role: "sidecar", nodeId: "n", ...opts });
  return (JSON.parse(text) as Json).static_resources.clusters.find((c: Json) => c.name === "xds-grpc");
};
const endpointsOf = (cluster: Json): string[] =>
  cluster.load_assignment.endpoints.flatMap((l: Json) => l.lb_endpoints.map((e: Json) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`));

function meshkey(...args: string[]) {
  return spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
}

test("two addresses give the xds-grpc cluster two endpoints, in the order given", () => {
  const cluster = xdsCluster({ xdsAddress: ["127.0.0.1:15010", "127.0.0.2:15020"] });
  assert.equal(endpointsOf(cluster), ["127.0.0.1:15010", "127.0.0.2:15020"]);
  assert.is(cluster.type, "STATIC");
});

test("a comma-separated list is the same as a list of addresses, spaces around commas ignored", () => {
  assert.equal(
    xdsCluster({ xdsAddress: "127.0.0.1:15010, 127.0.0.2:15020,[::1]:15030" }),
    xdsCluster({ xdsAddress: ["127.0.0.1:15010", "127.0.0.2:15020", "[::1]:15030"] }),
  );
});

test("one address is still one endpoint", () => {
  assert.equal(endpointsOf(xdsCluster({ xdsAddress: "10.0.0.5:15010" })), ["10.0.0.5:15010"]);
});

test("a host name among the addresses makes the cluster STRICT_DNS (each name resolved)", () => {
  const cluster = xdsCluster({ xdsAddress: ["10.0.0.5:15010", "istiod-2.istio-system:15010"] });
  assert.is(cluster.type, "STRICT_DNS");
  assert.equal(endpointsOf(cluster), ["10.0.0.5:15010", "istiod-2.istio-system:15010"]);
});

test("with --xds-tls every replica is reached over the same mTLS context", () => {
  const cluster = xdsCluster({ xdsTls: true, xdsAddress: "127.0.0.1:15011,127.0.0.2:15011" });
  assert.equal(endpointsOf(cluster), ["127.0.0.1:15011", "127.0.0.2:15011"]);
  assert.is(cluster.transport_socket.typed_config["@type"], "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext");
});

test("an address listed twice, an empty item or a bad address is refused, naming it", () => {
  const cases: [BootstrapOptions["xdsAddress"], RegExp][] = [
    ["127.0.0.1:15010,127.0.0.1:15010", /xdsAddress lists 127\.0\.0\.1:15010 twice/],
    [["127.0.0.1:15010", "127.0.0.1:15010"], /lists 127\.0\.0\.1:15010 twice/],
    ["127.0.0.1:15010,", /has an empty address/],
    [[], /has an empty address/],
    ["127.0.0.1:15010,nohost", /xdsAddress "nohost" is not host:port/],
  ];
  for (const [xdsAddress, re] of cases) assert.throws(() => renderBootstrap({ role: "sidecar", nodeId: "n", xdsAddress }), re);
});

test("the xds-grpc cluster notices a dead replica: HTTP/2 PINGs and TCP keepalive", () => {
  const cluster = xdsCluster({ xdsAddress: "127.0.0.1:15010,127.0.0.2:15010" });
  const h2 = cluster.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].explicit_http_config.http2_protocol_options;
  assert.equal(h2.connection_keepalive, { interval: "10s", timeout: "5s" });
  assert.equal(cluster.upstream_connection_options.tcp_keepalive, { keepalive_time: 30, keepalive_interval: 10, keepalive_probes: 3 });
  assert.is(cluster.connect_timeout, "1s");
});

test("meshkey bootstrap: --xds-address repeated and comma-separated print the same bootstrap", () => {
  const base = ["bootstrap", "--role", "sidecar", "--node-id", "sidecar~127.75.0.1~a-1.foo~foo.svc.cluster.local", "--namespace", "foo"];
  const repeated = meshkey(...base, "--xds-address", "127.0.0.1:15010", "--xds-address", "127.0.0.1:15020,127.0.0.1:15030");
  const commas = meshkey(...base, "--xds-address", "127.0.0.1:15010,127.0.0.1:15020,127.0.0.1:15030");
  assert.is(repeated.status, 0, repeated.stderr);
  assert.is(commas.status, 0, commas.stderr);
  assert.is(repeated.stdout, commas.stdout);
  const cluster = (JSON.parse(commas.stdout) as Json).static_resources.clusters[0];
  assert.equal(endpointsOf(cluster), ["127.0.0.1:15010", "127.0.0.1:15020", "127.0.0.1:15030"]);
});

test("meshkey bootstrap: a replica address listed twice is a usage error (exit 2) naming it", () => {
  const r = meshkey("bootstrap", "--role", "sidecar", "--node-id", "x", "--xds-address", "127.0.0.1:15010", "--xds-address", "127.0.0.1:15010");
  assert.is(r.status, 2);
  assert.match(r.stderr, /lists 127\.0\.0\.1:15010 twice/);
  assert.is(r.stdout, "");
});

test.run();
