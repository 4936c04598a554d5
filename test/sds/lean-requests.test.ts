// The SDS service as the server decodes it: every request field but Envoy's Node arrives
// exactly as the generated schema decodes it, the Node is carried as bytes and never
// parsed, and the service keeps the generated one's name, methods, paths and responses.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fc from "fast-check";
import { create, equals, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";
import { LeanSecretDiscoveryService, toDeltaDiscoveryRequest, toDiscoveryRequest } from "../../src/sds/lean-requests.js";

const SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/** A Node as Envoy 1.40 sends it: hundreds of extensions, metadata, locality. */
const envoyNode = (extensions: number): MessageInitShape<typeof DiscoveryRequestSchema>["node"] => ({
  id: "sidecar~10.0.0.1~httpbin-1.foo~foo.svc.cluster.local",
  cluster: "httpbin.foo",
  metadata: { fields: { SDS_TOKEN_PATH: { kind: { case: "stringValue", value: "/var/run/secrets/token" } } } },
  locality: { region: "r", zone: "z" },
  userAgentName: "envoy",
  extensions: Array.from({ length: extensions }, (_, i) => ({ name: `envoy.filters.ext_${i}`, category: "envoy.filters.http", typeUrls: [`type.googleapis.com/envoy.ext.v3.Config${i}`] })),
});

const method = (name: string) => LeanSecretDiscoveryService.methods.find((m) => m.name === name)!;

const sotw: Array<[string, MessageInitShape<typeof DiscoveryRequestSchema>]> = [
  ["Envoy's first request (its Node with 516 extensions)", { node: envoyNode(516), typeUrl: SECRET, resourceNames: ["default"] }],
  ["an ACK", { versionInfo: "3", typeUrl: SECRET, resourceNames: ["default"], responseNonce: "s1-3" }],
  ["a NACK with its status", { versionInfo: "2", typeUrl: SECRET, resourceNames: ["ROOTCA"], responseNonce: "s1-3", errorDetail: { code: 3, message: "bad key" } }],
  ["resource locators (xDS-TP)", { typeUrl: SECRET, resourceLocators: [{ name: "xdstp://a/b/default", dynamicParameters: { k: "v" } }] }],
  ["an empty request", {}],
];
for (const [what, init] of sotw) {
  test(`StreamSecrets and FetchSecrets: ${what} decodes as the generated schema does, without the node`, () => {
    const bytes = toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, init));
    const expected = fromBinary(DiscoveryRequestSchema, bytes);
    const nodeBytes = expected.node ? toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { node: expected.node })).length : 0;
    expected.node = undefined;
    for (const name of ["StreamSecrets", "FetchSecrets"]) {
      const lean = fromBinary(method(name).input, bytes) as never;
      assert.ok(equals(DiscoveryRequestSchema, toDiscoveryRequest(lean), expected), name);
      const raw = (lean as { node: Uint8Array }).node;
      assert.instance(raw, Uint8Array, "the node is carried as bytes, not parsed");
      if (nodeBytes > 0) assert.ok(raw.length > 0 && raw.length < nodeBytes, `node of ${raw.length} bytes`);
    }
  });
}

const delta: Array<[string, MessageInitShape<typeof DeltaDiscoveryRequestSchema>]> = [
  ["Envoy's first request, with the versions it already has", { node: envoyNode(516), typeUrl: SECRET, resourceNamesSubscribe: ["default", "ROOTCA"], initialResourceVersions: { default: "v1", ROOTCA: "r1" } }],
  ["an unsubscribe with a NACK", { typeUrl: SECRET, resourceNamesUnsubscribe: ["ROOTCA"], responseNonce: "s2-1", errorDetail: { code: 13, message: "nope" } }],
  ["resource locators (xDS-TP)", { resourceLocatorsSubscribe: [{ name: "xdstp://a/b/default" }], resourceLocatorsUnsubscribe: [{ name: "xdstp://a/b/ROOTCA" }] }],
];
for (const [what, init] of delta) {
  test(`DeltaSecrets: ${what} decodes as the generated schema does, without the node`, () => {
    const bytes = toBinary(DeltaDiscoveryRequestSchema, create(DeltaDiscoveryRequestSchema, init));
    const expected = fromBinary(DeltaDiscoveryRequestSchema, bytes);
    expected.node = undefined;
    const lean = fromBinary(method("DeltaSecrets").input, bytes) as never;
    assert.ok(equals(DeltaDiscoveryRequestSchema, toDeltaDiscoveryRequest(lean), expected));
  });
}

test("any SotW request's fields but the node come through unchanged (property)", () => {
  const str = fc.string({ maxLength: 40 });
  fc.assert(
    fc.property(
      fc.record({
        versionInfo: str,
        resourceNames: fc.array(str, { maxLength: 5 }),
        typeUrl: str,
        responseNonce: str,
        errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: str }), { nil: undefined }),
        nodeId: str,
      }),
      ({ nodeId, ...r }) => {
        const bytes = toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { ...r, node: { id: nodeId } }));
        const expected = fromBinary(DiscoveryRequestSchema, bytes);
        expected.node = undefined;
        return equals(DiscoveryRequestSchema, toDiscoveryRequest(fromBinary(method("StreamSecrets").input, bytes) as never), expected);
      },
    ),
  );
});

test("the lean service is SecretDiscoveryService: same name, methods, kinds, responses", () => {
  assert.is(LeanSecretDiscoveryService.typeName, SecretDiscoveryService.typeName);
  const shape = (s: typeof SecretDiscoveryService | typeof LeanSecretDiscoveryService) =>
    s.methods.map((m) => [m.name, m.localName, m.methodKind, m.output.typeName]).sort();
  assert.equal(shape(LeanSecretDiscoveryService), shape(SecretDiscoveryService));
  for (const m of LeanSecretDiscoveryService.methods) {
    const generated = SecretDiscoveryService.methods.find((g) => g.name === m.name)!;
    const fields = (d: typeof m.input) => d.fields.map((f) => [f.number, f.name, f.name === "node" ? "bytes" : f.fieldKind]);
    assert.equal(fields(m.input), fields(generated.input), `${m.name}: the request's fields, node as bytes`);
    const node = m.input.fields.find((f) => f.name === "node")!;
    assert.equal([node.fieldKind, node.fieldKind === "scalar" && node.scalar], ["scalar", 12], "node: bytes (ScalarType.BYTES)");
  }
});

test.run();
