// Everything the translator produces passes meshkey's strict Envoy validator
// (proto3 + PGV rules + cross-references), for every node of every mesh fixture.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { parseMesh, translateForNode } from "../../src/mesh/index.js";
import { renderNodes } from "../../src/xds/index.js";
import { formatIssues, validateEnvoyConfig } from "../../src/envoy/index.js";

const opts = { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" };

for (const f of readdirSync("fixtures/mesh").filter((x) => x.endsWith(".yaml")).sort()) {
  test(`every resource for every node of ${f} passes strict Envoy validation`, () => {
    const mesh = parseMesh(readFileSync(`fixtures/mesh/${f}`, "utf8"), f);
    for (const node of renderNodes(mesh)) {
      const s = translateForNode(mesh, node, opts);
      const r = validateEnvoyConfig([...s.clusters, ...s.endpoints, ...s.listeners, ...s.routes]);
      assert.is(r.issues.length, 0, `${node.id}:\n${formatIssues(r.issues)}`);
    }
  });
}

test("the validator used above does reject a broken resource (the check can fail)", () => {
  const r = validateEnvoyConfig([create(ClusterSchema, { name: "", connectTimeout: { seconds: -1n } })]);
  assert.ok(r.issues.length > 0);
});

test.run();
