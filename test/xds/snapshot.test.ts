// Snapshots: encoded once, versions from content, consistency of references.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create } from "@bufbuild/protobuf";
import { ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { defaultMesh, translateForNode } from "../../src/mesh/index.js";
import { cacheResource, createSnapshot, snapshotConsistency, snapshotFromResources, TypeUrl } from "../../src/xds/index.js";

const opts = { trustDomain: "cluster.local", sdsSocketPath: "/s", tokenPath: "/t" };

test("a resource's version is a hash of its encoding: equal content, equal version", () => {
  const a1 = cacheResource(ClusterSchema, "a", create(ClusterSchema, { name: "a" }));
  const a2 = cacheResource(ClusterSchema, "a", create(ClusterSchema, { name: "a" }));
  const a3 = cacheResource(ClusterSchema, "a", create(ClusterSchema, { name: "a", altStatName: "x" }));
  assert.is(a1.version, a2.version);
  assert.is.not(a1.version, a3.version);
  assert.is(a1.any.typeUrl, TypeUrl.Cluster);
});

test("a type's version changes only when one of its resources does", () => {
  const c = (tag: string) => cacheResource(ClusterSchema, "a", create(ClusterSchema, { name: "a", altStatName: tag }));
  const s1 = createSnapshot([c("1")], [TypeUrl.Endpoint]);
  const s2 = createSnapshot([c("1")], [TypeUrl.Endpoint]);
  const s3 = createSnapshot([c("2")], [TypeUrl.Endpoint]);
  assert.is(s1.get(TypeUrl.Cluster)!.version, s2.get(TypeUrl.Cluster)!.version);
  assert.is.not(s1.get(TypeUrl.Cluster)!.version, s3.get(TypeUrl.Cluster)!.version);
  assert.is(s1.get(TypeUrl.Endpoint)!.version, s3.get(TypeUrl.Endpoint)!.version);
});

test("a translated snapshot is consistent; one missing a load assignment or a route is not", () => {
  const set = translateForNode(defaultMesh, { id: "sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local" }, opts);
  assert.equal(snapshotConsistency(snapshotFromResources(set)), []);
  const broken = snapshotFromResources({ ...set, endpoints: set.endpoints.filter((e) => !e.clusterName.includes("httpbin.bar")), routes: [] });
  const problems = snapshotConsistency(broken);
  assert.ok(problems.some((p) => p.includes('refers to missing envoy.config.endpoint.v3.ClusterLoadAssignment "outbound|8000||httpbin.bar.svc.cluster.local"')), problems.join("\n"));
  assert.ok(problems.some((p) => p.includes('refers to missing envoy.config.route.v3.RouteConfiguration "8000"')), problems.join("\n"));
});

test("a duplicate resource name in one type is refused", () => {
  const a = cacheResource(ClusterSchema, "a", create(ClusterSchema, { name: "a" }));
  assert.throws(() => createSnapshot([a, a]), /duplicate .* "a"/);
});

test.run();
