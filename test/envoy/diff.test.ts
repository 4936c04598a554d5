// The semantic diff: resources matched by type and name, compared as protos.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { diffEnvoyConfigs, formatDiff, ConfigSchemaError } from "../../src/envoy/index.js";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const base = (): Json => JSON.parse(readFileSync("fixtures/envoy/static-bootstrap.json", "utf8"));
const slide = (): Json => {
  // YAML fixture through the same reader the CLI uses
  return import("../../src/envoy/index.js").then((m) => m.parseConfigText(readFileSync("fixtures/envoy/seeds-slide-cluster-v3.yaml", "utf8"), "slide.yaml"));
};

test("a config equals itself", () => {
  assert.equal(diffEnvoyConfigs(base(), base()), { same: true, changes: [] });
});

test("reordered but equal configs have no differences (keys, named lists, camelCase, defaults)", () => {
  const a = base();
  const b = base();
  b.static_resources.listeners.reverse(); // named elements: order-insensitive
  const c = b.static_resources.clusters[0];
  delete c.connect_timeout;
  c.connectTimeout = "1.000s"; // same duration, other spelling
  c.lb_policy = "ROUND_ROBIN"; // the default, equal to absent
  delete a.static_resources.clusters[0].lb_policy;
  const reversedKeys = Object.fromEntries(Object.entries(a).reverse());
  const d = diffEnvoyConfigs(reversedKeys, b);
  assert.ok(d.same, formatDiff(d));
});

test("a changed SAN shows exactly that path", async () => {
  const a = await slide();
  const b = await slide();
  b.static_resources.clusters[0].transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher.exact =
    "spiffe://cluster.local/ns/foo/sa/httpbin";
  const d = diffEnvoyConfigs(a, b);
  assert.equal(d.changes, [
    {
      resource: "Cluster/outbound|8000||httpbin.default.svc.cluster.local",
      path: "transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher.exact",
      a: "spiffe://cluster.local/ns/default/sa/default",
      b: "spiffe://cluster.local/ns/foo/sa/httpbin",
    },
  ]);
  assert.is(
    formatDiff(d),
    [
      "Cluster/outbound|8000||httpbin.default.svc.cluster.local",
      '  transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher.exact: "spiffe://cluster.local/ns/default/sa/default" → "spiffe://cluster.local/ns/foo/sa/httpbin"',
    ].join("\n"),
  );
});

test("added and removed resources and fields are reported on their own lines", () => {
  const a = base();
  const b = base();
  b.static_resources.listeners.pop();
  b.static_resources.clusters[0].dns_refresh_rate = "5s";
  delete b.admin;
  const d = diffEnvoyConfigs(a, b);
  assert.equal(
    d.changes.map((c) => [c.resource, c.path, c.a === undefined, c.b === undefined]),
    [
      ["Bootstrap/router~10.0.0.1~edge.default", "admin", false, true],
      ["Cluster/backend", "dns_refresh_rate", true, false],
      ["Listener/tcp", "", false, true],
    ],
  );
  assert.match(formatDiff(d), /^Listener\/tcp: only in A$/m);
  assert.match(formatDiff(d), /^ {2}dns_refresh_rate: \(absent\) → "5s"$/m);
});

test("a bootstrap and a config_dump holding the same resources compare equal", () => {
  const b = base();
  const dump = {
    configs: [
      { "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", bootstrap: b },
      {
        "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
        static_clusters: [{ cluster: { "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", ...b.static_resources.clusters[0] } }],
      },
    ],
  };
  const d = diffEnvoyConfigs(b, dump);
  assert.ok(d.same, formatDiff(d));
});

test("an invalid side is an error that says which side", () => {
  const bad = base();
  bad.static_resources.clusters[0].nope = 1;
  try {
    diffEnvoyConfigs(base(), bad);
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, ConfigSchemaError);
    assert.match((err as Error).message, /^config B: static_resources\.clusters\[0\]\.nope: unknown field/);
  }
});

// Random bootstraps: a few clusters with random names, timeouts, policies and endpoints.
const clusterArb = fc.record({
  name: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/),
  connect_timeout: fc.integer({ min: 1, max: 5000 }).map((ms) => `${ms / 1000}s`),
  lb_policy: fc.constantFrom("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"),
  ports: fc.array(fc.integer({ min: 1, max: 65535 }), { minLength: 1, maxLength: 3 }),
  metadata: fc.dictionary(fc.stringMatching(/^[a-z]{1,5}$/), fc.oneof(fc.string({ maxLength: 5 }), fc.integer({ min: 0, max: 100 })), { maxKeys: 3 }),
});
const bootstrapArb = fc.uniqueArray(clusterArb, { selector: (c) => c.name, maxLength: 4 }).map((clusters) => ({
  node: { id: "n" },
  static_resources: {
    clusters: clusters.map((c) => ({
      name: c.name,
      connect_timeout: c.connect_timeout,
      lb_policy: c.lb_policy,
      metadata: { filter_metadata: { meshkey: c.metadata } },
      load_assignment: {
        cluster_name: c.name,
        endpoints: [{ lb_endpoints: c.ports.map((p) => ({ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: p } } } })) }],
      },
    })),
  },
}));

test("property: diff(a, a) is empty", () => {
  fc.assert(
    fc.property(bootstrapArb, (a) => diffEnvoyConfigs(a, structuredClone(a)).same),
    { numRuns: 100 },
  );
});

test("property: diff is symmetric in the paths it reports, with a and b swapped", () => {
  fc.assert(
    fc.property(bootstrapArb, bootstrapArb, (a, b) => {
      const ab = diffEnvoyConfigs(a, b).changes;
      const ba = diffEnvoyConfigs(b, a).changes;
      const key = (c: { resource: string; path: string }) => `${c.resource} ${c.path}`;
      assert.equal(ab.map(key).sort(), ba.map(key).sort());
      const swapped = new Map(ba.map((c) => [key(c), { a: c.b, b: c.a }]));
      for (const c of ab) assert.equal(swapped.get(key(c)), { a: c.a, b: c.b });
      return (ab.length === 0) === diffEnvoyConfigs(a, b).same;
    }),
    { numRuns: 100 },
  );
});

test("reordering filters, whose order Envoy acts on, is a change even when each filter is equal", () => {
  const listener = (order: string[]): Json => ({
    "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
    name: "inbound",
    address: { socket_address: { address: "0.0.0.0", port_value: 15006 } },
    filter_chains: [
      {
        filters: order.map((name) => ({
          name,
          typed_config: {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            stat_prefix: name,
            cluster: "c",
          },
        })),
      },
    ],
  });
  const d = diffEnvoyConfigs(listener(["first", "second"]), listener(["second", "first"]));
  assert.equal(d.changes, [
    { resource: "Listener/inbound", path: "filter_chains[0].filters(order)", a: ["first", "second"], b: ["second", "first"] },
  ]);
  // A named list whose order Envoy ignores (clusters, listeners) still compares by name only.
  assert.ok(diffEnvoyConfigs({ resources: [listener(["a"]), { ...listener(["a"]), name: "other" }] }, { resources: [{ ...listener(["a"]), name: "other" }, listener(["a"])] }).same);
});

test.run();
