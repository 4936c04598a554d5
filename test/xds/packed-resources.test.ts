// Responses built from pre-encoded resource bytes decode to the same message a fully built
// response gives: what a client (Envoy, grpc-js-xds) reads is unchanged.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { DeltaDiscoveryResponseSchema, DiscoveryResponseSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { cacheResource } from "../../src/xds/cache/snapshot.js";
import { deltaResponseMessage, sotwResponseMessage } from "../../src/xds/server/packed-resources.js";

const clusters = (n: number) =>
  Array.from({ length: n }, (_, i) => cacheResource(ClusterSchema, `c${i}`, create(ClusterSchema, { name: `c${i}`, altStatName: "é".repeat(i * 40) })));
const typeUrl = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

for (const n of [0, 1, 3, 200]) {
  test(`a SotW response of ${n} resources decodes to the fully built response`, () => {
    const rs = clusters(n);
    for (const nonce of ["1", "2"]) {
      // Twice: the second response reuses the body encoded for the first.
      const got = fromBinary(DiscoveryResponseSchema, toBinary(DiscoveryResponseSchema, sotwResponseMessage({ versionInfo: "v7", typeUrl, nonce }, rs, true)));
      const want = create(DiscoveryResponseSchema, { versionInfo: "v7", typeUrl, nonce, resources: rs.map((r) => r.any) });
      assert.ok(equals(DiscoveryResponseSchema, got, want), `nonce ${nonce}`);
    }
  });

  test(`a delta response of ${n} resources decodes to the fully built response`, () => {
    const rs = clusters(n);
    const init = { systemVersionInfo: "s1", typeUrl, nonce: "9", removedResources: ["gone"] };
    const got = fromBinary(DeltaDiscoveryResponseSchema, toBinary(DeltaDiscoveryResponseSchema, deltaResponseMessage(init, rs)));
    const want = create(DeltaDiscoveryResponseSchema, { ...init, resources: rs.map((r) => ({ name: r.name, version: r.version, resource: r.any })) });
    assert.ok(equals(DeltaDiscoveryResponseSchema, got, want));
  });
}

test("the same resources at another version get their own body", () => {
  const rs = clusters(2);
  const first = fromBinary(DiscoveryResponseSchema, toBinary(DiscoveryResponseSchema, sotwResponseMessage({ versionInfo: "a", typeUrl, nonce: "1" }, rs, true)));
  const second = fromBinary(DiscoveryResponseSchema, toBinary(DiscoveryResponseSchema, sotwResponseMessage({ versionInfo: "b", typeUrl, nonce: "2" }, rs, true)));
  assert.equal([first.versionInfo, second.versionInfo], ["a", "b"]);
});

test("a cached resource's Any is a view into its wire bytes, not a copy", () => {
  const [r] = clusters(1);
  assert.is(r!.any.value.buffer, r!.wire.buffer);
});

test.run();
