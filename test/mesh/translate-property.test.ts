// Property test: for any valid mesh, every node's resource set is consistent,
// passes strict Envoy validation and packs into a snapshot (unique names).
import { test } from "uvu";
import * as assert from "uvu/assert";
import fc from "fast-check";
import { stringify } from "yaml";
import { checkConsistency, parseMesh, translateForNode } from "../../src/mesh/index.js";
import { renderNodes, snapshotConsistency, snapshotFromResources } from "../../src/xds/index.js";
import { formatIssues, validateEnvoyConfig } from "../../src/envoy/index.js";

const opts = { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/t" };
const name = fc.constantFrom("a", "b", "web", "db", "echo");
const ns = fc.constantFrom("foo", "bar", "baz");
const ip = fc.constantFrom("10.0.0.1", "10.0.0.2", "127.0.0.1", "127.0.1.1");
const portNo = fc.constantFrom(80, 8000, 8080, 7070, 5432);

const meshArb = fc.record({
  namespaces: fc.uniqueArray(fc.record({ name: ns, mtls: fc.constantFrom("STRICT", "PERMISSIVE", "DISABLE") }), { selector: (n) => n.name, maxLength: 3 }),
  services: fc.uniqueArray(
    fc.record({
      name,
      namespace: ns,
      serviceAccount: name,
      ports: fc.uniqueArray(fc.record({ port: portNo, protocol: fc.constantFrom("HTTP", "GRPC", "TCP") }), { selector: (p) => p.port, minLength: 1, maxLength: 3 }),
      endpoints: fc.array(
        fc.record({ address: ip, port: fc.integer({ min: 1024, max: 65535 }), weight: fc.integer({ min: 1, max: 5 }), locality: fc.record({ zone: fc.constantFrom("z1", "z2") }) }),
        { maxLength: 3 },
      ),
    }),
    { selector: (s) => `${s.name}.${s.namespace}`, maxLength: 5 },
  ),
});

test("any valid mesh translates, for every node, into consistent, valid, uniquely named resources", () => {
  fc.assert(
    fc.property(meshArb, (raw) => {
      const mesh = parseMesh(stringify(raw), "prop.yaml");
      const nodes = [...renderNodes(mesh), ...mesh.services.flatMap((s) => s.endpoints.map((e) => ({ id: `sidecar~${e.address}~${s.name}-1.${s.namespace}~${s.namespace}.svc.cluster.local` })))];
      for (const node of nodes) {
        const set = translateForNode(mesh, node, opts);
        assert.equal(checkConsistency(set), [], node.id);
        const snapshot = snapshotFromResources(set); // throws on a duplicate name
        assert.equal(snapshotConsistency(snapshot), [], node.id);
        const v = validateEnvoyConfig([...set.clusters, ...set.endpoints, ...set.listeners, ...set.routes]);
        assert.is(v.issues.length, 0, `${node.id}\n${formatIssues(v.issues)}`);
      }
    }),
    { numRuns: 100 },
  );
});

test.run();
