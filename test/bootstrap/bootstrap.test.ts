// Bootstrap templates: every role renders a bootstrap that passes the validator,
// matches its golden file, and carries the seeds' SDS config source everywhere.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create, equals, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiConfigSource_ApiType, ConfigSourceSchema } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { ApiVersion } from "../../gen/envoy/config/core/v3/config_source_pb.js";
import { FileBasedMetadataConfigSchema } from "../../gen/envoy/config/grpc_credential/v3/file_based_metadata_pb.js";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { BOOTSTRAP_ROLES, BootstrapError, renderBootstrap, type BootstrapOptions } from "../../src/bootstrap/index.js";
import { diffEnvoyConfigs, envoyTypeRegistry, expectGolden, formatDiff, parseConfigText, pruneGoldens, updatingGoldens, validateEnvoyConfig } from "../../src/envoy/index.js";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const GOLDEN_DIR = "fixtures/bootstrap";
const goldenOptions = (role: BootstrapOptions["role"]): BootstrapOptions => ({
  role,
  nodeId: `${role}~10.0.0.1~${role}.foo`,
  namespace: role === "sidecar" ? "foo" : undefined,
  serviceAccount: role === "sidecar" ? "httpbin" : undefined,
});

/** Every object under a `sds_config` key, with its JSON path. */
function sdsConfigs(v: JsonValue, path = ""): [string, JsonValue][] {
  if (Array.isArray(v)) return v.flatMap((x, i) => sdsConfigs(x, `${path}[${i}]`));
  if (typeof v !== "object" || v === null) return [];
  return Object.entries(v).flatMap(([k, x]) => (k === "sds_config" ? [[`${path}.${k}`, x] as [string, JsonValue]] : sdsConfigs(x, `${path}.${k}`)));
}

/** The seeds' SDS config source, built as a typed message. */
function seedsSdsConfig(socket: string, tokenPath: string) {
  return create(ConfigSourceSchema, {
    resourceApiVersion: ApiVersion.V3,
    configSourceSpecifier: {
      case: "apiConfigSource",
      value: {
        apiType: ApiConfigSource_ApiType.GRPC,
        transportApiVersion: ApiVersion.V3,
        grpcServices: [
          {
            targetSpecifier: {
              case: "googleGrpc",
              value: {
                targetUri: `unix:${socket}`,
                statPrefix: "sdsstat",
                channelCredentials: { credentialSpecifier: { case: "localCredentials", value: {} } },
                callCredentials: [
                  {
                    credentialSpecifier: {
                      case: "fromPlugin",
                      value: {
                        name: "envoy.grpc_credentials.file_based_metadata",
                        configType: {
                          case: "typedConfig",
                          value: anyPack(
                            FileBasedMetadataConfigSchema,
                            create(FileBasedMetadataConfigSchema, {
                              secretData: { specifier: { case: "filename", value: tokenPath } },
                              headerKey: "istio_sds_credentials_header-bin",
                            }),
                          ),
                        },
                      },
                    },
                  },
                ],
                credentialsFactoryName: "envoy.grpc_credentials.file_based_metadata",
              },
            },
          },
        ],
      },
    },
  });
}

for (const role of BOOTSTRAP_ROLES) {
  for (const format of ["json", "yaml"] as const) {
    test(`${role} (${format}) renders a bootstrap the validator accepts`, () => {
      const { text, bootstrap } = renderBootstrap({ ...goldenOptions(role), format });
      const input = parseConfigText(text, `${role}.${format}`);
      const r = validateEnvoyConfig(input);
      assert.is(r.kind, "bootstrap");
      assert.equal(r.issues, []);
      assert.is(bootstrap.node?.id, `${role}~10.0.0.1~${role}.foo`);
    });
  }

  test(`${role} matches its golden file (${GOLDEN_DIR}/${role}.json)`, () => {
    expectGolden(join(GOLDEN_DIR, `${role}.json`), renderBootstrap(goldenOptions(role)).bootstrap);
  });

  test(`${role}: every sds_config is the seeds' config source, identical everywhere`, () => {
    // The sidecar's only TLS context is the one of mTLS ADS (--xds-tls).
    const { text } = renderBootstrap({ ...goldenOptions(role), sdsSocket: "/run/sds.sock", tokenPath: "/run/token", xdsTls: role === "sidecar" });
    const found = sdsConfigs(JSON.parse(text));
    assert.ok(found.length >= 2, `expected SDS configs for default and ROOTCA, got ${found.length}`);
    const expected = seedsSdsConfig("/run/sds.sock", "/run/token");
    for (const [path, json] of found) {
      const got = fromJson(ConfigSourceSchema, json, { registry: envoyTypeRegistry });
      assert.ok(equals(ConfigSourceSchema, got, expected, { registry: envoyTypeRegistry, unpackAny: true }), `${path} differs from the seeds' shape`);
    }
  });
}

test("golden files have no orphans (UPDATE_GOLDEN=1 removes them)", () => {
  const orphans = pruneGoldens(GOLDEN_DIR);
  if (!updatingGoldens()) assert.equal(orphans, []);
});

test("sidecar: by default ADS is plaintext to serve's --xds-listen default, 127.0.0.1:15010", () => {
  const { text } = renderBootstrap({ role: "sidecar", nodeId: "n" });
  const b: Json = JSON.parse(text);
  const xds = b.static_resources.clusters[0];
  assert.is(xds.name, "xds-grpc");
  assert.is(xds.type, "STATIC");
  assert.equal(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "127.0.0.1", port_value: 15010 });
  assert.is(xds.transport_socket, undefined);
});

test("sidecar: node metadata names the SDS socket and token file the control plane must push", () => {
  const { text } = renderBootstrap({ role: "sidecar", nodeId: "n", sdsSocket: "/run/a/uds", tokenPath: "/run/a/token" });
  const md = JSON.parse(text).node.metadata;
  assert.is(md.SDS_SOCKET, "/run/a/uds");
  assert.is(md.SDS_TOKEN_PATH, "/run/a/token");
});

test("sidecar --xds-tls: the default address is serve's --xds-tls-listen default, 127.0.0.1:15011", () => {
  const { text } = renderBootstrap({ role: "sidecar", nodeId: "n", xdsTls: true });
  const xds = JSON.parse(text).static_resources.clusters[0];
  assert.equal(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "127.0.0.1", port_value: 15011 });
});

test("pilot: runs as the control-plane identity sidecars expect of ADS (one setting)", () => {
  for (const cp of [{}, { controlPlaneNamespace: "mesh-cp", controlPlaneServiceAccount: "meshkey" }]) {
    const pilot: Json = JSON.parse(renderBootstrap({ role: "pilot", nodeId: "p", ...cp }).text);
    const sidecar: Json = JSON.parse(renderBootstrap({ role: "sidecar", nodeId: "s", xdsTls: true, ...cp }).text);
    const expected = sidecar.static_resources.clusters[0].transport_socket.typed_config.common_tls_context.combined_validation_context
      .default_validation_context.match_typed_subject_alt_names[0].matcher.exact;
    assert.is(pilot.node.metadata.SPIFFE_ID, expected);
  }
  const pilot: Json = JSON.parse(renderBootstrap({ role: "pilot", nodeId: "p" }).text);
  assert.is(pilot.node.metadata.SPIFFE_ID, "spiffe://cluster.local/ns/istio-system/sa/istiod");
});

test("sidecar --xds-tls: ADS over the mTLS xds-grpc cluster, SAN = the control plane's SPIFFE ID", () => {
  const { text } = renderBootstrap({ role: "sidecar", nodeId: "n", trustDomain: "example.org", xdsAddress: "istiod.istio-system.svc:15012", xdsTls: true });
  const b: Json = JSON.parse(text);
  assert.equal(b.dynamic_resources.ads_config.grpc_services, [{ envoy_grpc: { cluster_name: "xds-grpc" } }]);
  assert.is(b.dynamic_resources.ads_config.transport_api_version, "V3");
  assert.equal(b.dynamic_resources.cds_config, { ads: {}, resource_api_version: "V3" });
  assert.equal(b.dynamic_resources.lds_config, { ads: {}, resource_api_version: "V3" });
  assert.equal(b.admin.address.socket_address, { address: "127.0.0.1", port_value: 15000 });
  const xds = b.static_resources.clusters[0];
  assert.is(xds.name, "xds-grpc");
  assert.is(xds.type, "STRICT_DNS"); // a host name, not an IP
  assert.equal(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "istiod.istio-system.svc", port_value: 15012 });
  const ctx = xds.transport_socket.typed_config;
  assert.is(ctx["@type"], "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext");
  assert.is(ctx.common_tls_context.tls_certificate_sds_secret_configs[0].name, "default");
  assert.is(ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name, "ROOTCA");
  assert.equal(ctx.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names, [
    { san_type: "URI", matcher: { exact: "spiffe://example.org/ns/istio-system/sa/istiod" } },
  ]);
  assert.is(b.node.metadata.SPIFFE_ID, "spiffe://example.org/ns/default/sa/default");
});

test("pilot: an mTLS listener requiring client certificates in front of 127.0.0.1:<discovery port>", () => {
  const { text } = renderBootstrap({ role: "pilot", nodeId: "p", listenPort: 15011, localPort: 15010 });
  const b: Json = JSON.parse(text);
  const l = b.static_resources.listeners[0];
  assert.equal(l.address.socket_address, { address: "0.0.0.0", port_value: 15011 });
  const chain = l.filter_chains[0];
  assert.is(chain.transport_socket.typed_config.require_client_certificate, true);
  assert.is(chain.transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name, "default");
  assert.is(chain.filters[0].typed_config.cluster, "pilot-discovery-local");
  const c = b.static_resources.clusters.find((x: Json) => x.name === "pilot-discovery-local");
  assert.equal(c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, { address: "127.0.0.1", port_value: 15010 });
});

test("ingress and mixer-like: mTLS HTTP listeners routing to their local cluster (mixer-like over HTTP/2)", () => {
  for (const [role, cluster, port] of [["ingress", "ingress-upstream", 8443], ["mixer-like", "telemetry-local", 15004]] as const) {
    const b: Json = JSON.parse(renderBootstrap({ role, nodeId: "x" }).text);
    const l = b.static_resources.listeners[0];
    assert.is(l.address.socket_address.port_value, port);
    assert.is(l.filter_chains[0].transport_socket.typed_config.require_client_certificate, true);
    const hcm = l.filter_chains[0].filters[0].typed_config;
    assert.is(hcm.route_config.virtual_hosts[0].routes[0].route.cluster, cluster);
  }
  const m: Json = JSON.parse(renderBootstrap({ role: "mixer-like", nodeId: "x" }).text);
  const opts = m.static_resources.clusters[0].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
  assert.equal(opts.explicit_http_config, { http2_protocol_options: {} });
});

test("values are JSON-escaped, not HTML-escaped", () => {
  const nodeId = `a"b<c>&d'e\\f\nend`;
  const { bootstrap } = renderBootstrap({ role: "sidecar", nodeId, namespace: "n&s" });
  assert.is(bootstrap.node?.id, nodeId);
  assert.is(bootstrap.node?.cluster, "default.n&s");
});

test("yaml and json outputs describe the same bootstrap", () => {
  const j = renderBootstrap({ role: "ingress", nodeId: "i", format: "json" });
  const y = renderBootstrap({ role: "ingress", nodeId: "i", format: "yaml" });
  assert.not.match(y.text, /^\s*\{/);
  const d = diffEnvoyConfigs(parseConfigText(y.text, "i.yaml"), JSON.parse(j.text));
  assert.ok(d.same, formatDiff(d));
});

const tmpl = mkdtempSync(join(tmpdir(), "meshkey-templates-"));
test.after(() => rmSync(tmpl, { recursive: true, force: true }));

test("a missing template variable is an error that names it", () => {
  cpSync("templates", tmpl, { recursive: true });
  writeFileSync(join(tmpl, "sidecar.json.hbs"), '{\n  "node": { "id": {{json nodeId}}, "cluster": {{json clusterNmae}} }\n}\n');
  try {
    renderBootstrap({ role: "sidecar", nodeId: "n", templateDir: tmpl });
    assert.unreachable("should throw");
  } catch (err) {
    assert.instance(err, BootstrapError);
    assert.match((err as Error).message, /template sidecar\.json\.hbs: missing variable "clusterNmae" \(line 2/);
  }
});

test("a template that renders a schema-invalid bootstrap is rejected before printing, naming the path", () => {
  const dir = join(tmpl, "invalid");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "pilot.json.hbs"),
    '{ "node": { "id": {{json nodeId}} }, "static_resources": { "clusters": [ { "name": "c", "connect_timeout": "0s" } ] } }',
  );
  writeFileSync(join(dir, "ingress.json.hbs"), '{ "node": { "id": {{json nodeId}}, "clustr": "x" } }');
  assert.throws(() => renderBootstrap({ role: "pilot", nodeId: "n", templateDir: dir }), /static_resources\.clusters\[0\]\.connect_timeout: must be greater than 0s/);
  assert.throws(() => renderBootstrap({ role: "ingress", nodeId: "n", templateDir: dir }), /node\.clustr: unknown field "clustr"/);
});

test("bad options are errors naming the option", () => {
  const cases: [Partial<BootstrapOptions>, RegExp][] = [
    [{ nodeId: "" }, /missing required option nodeId/],
    [{ xdsAddress: "nohost" }, /xdsAddress "nohost" is not host:port/],
    [{ xdsAddress: "h:70000" }, /xdsAddress: port 70000/],
    [{ role: "gateway" as never }, /unknown role "gateway"/],
    [{ namespace: "" }, /option namespace must not be empty/],
  ];
  for (const [o, re] of cases) assert.throws(() => renderBootstrap({ role: "sidecar", nodeId: "n", ...o }), re);
});

function meshkey(...args: string[]) {
  return spawnSync(process.execPath, ["bin/meshkey.js", ...args], { encoding: "utf8", timeout: 60_000 });
}

test("meshkey bootstrap -o FILE writes a bootstrap that meshkey validate accepts", () => {
  const out = join(tmpl, "envoy.yaml");
  const r = meshkey("bootstrap", "--role", "sidecar", "--node-id", "sidecar~1~a.b", "--namespace", "foo", "--service-account", "httpbin", "--format", "yaml", "-o", out);
  assert.is(r.status, 0, r.stderr);
  assert.match(readFileSync(out, "utf8"), /spiffe:\/\/cluster\.local\/ns\/foo\/sa\/httpbin/);
  const v = meshkey("validate", out);
  assert.is(v.status, 0, v.stdout + v.stderr);
});

test("meshkey bootstrap: an option the bootstrap cannot use is a usage error (exit 2) naming the flag", () => {
  const r = meshkey("bootstrap", "--role", "sidecar", "--node-id", "x", "--xds-address", "nohost");
  assert.is(r.status, 2);
  assert.match(r.stderr, /--xds-address "nohost" is not host:port/);
  assert.is(r.stdout, "");
});

test("meshkey bootstrap: a missing --role or a bad --format is a usage error (exit 2)", () => {
  assert.is(meshkey("bootstrap", "--node-id", "x").status, 2);
  const r = meshkey("bootstrap", "--role", "pilot", "--node-id", "x", "--format", "xml");
  assert.is(r.status, 2);
  assert.match(r.stderr, /--format must be json or yaml/);
});

test.run();
