// Each PGV rule family, compiled from a FieldRules message and applied to values.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { FieldRulesSchema, KnownRegex } from "../../gen/validate/validate_pb.js";
import { ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { compileFieldRules, compilePattern, type ValidationIssue } from "../../src/envoy/index.js";

type Rules = MessageInitShape<typeof FieldRulesSchema>;

function check(rules: Rules, value: unknown, opts: { enumValues?: number[]; wrapped?: boolean } = {}): string[] {
  const c = compileFieldRules(create(FieldRulesSchema, rules), opts.enumValues ? new Set(opts.enumValues) : undefined, opts.wrapped ?? false);
  const out: ValidationIssue[] = [];
  c.check?.(value, "f", out);
  return out.map((i) => i.message);
}

const dur = (seconds: number, nanos = 0) => create(DurationSchema, { seconds: BigInt(seconds), nanos });

// [name, rules, value, expected messages]
const cases: [string, Rules, unknown, string[], { enumValues?: number[] }?][] = [
  ["string const", { type: { case: "string", value: { const: "a" } } }, "b", ['must equal "a"']],
  ["string len counts code points", { type: { case: "string", value: { len: 2n } } }, "😀😀", []],
  ["string max_len", { type: { case: "string", value: { maxLen: 3n } } }, "abcd", ["length must be at most 3 characters"]],
  ["string min_bytes", { type: { case: "string", value: { minBytes: 5n } } }, "😀", ["length must be at least 5 bytes"]],
  ["string max_bytes", { type: { case: "string", value: { maxBytes: 3n } } }, "é é", ["length must be at most 3 bytes"]],
  ["string prefix", { type: { case: "string", value: { prefix: "spiffe://" } } }, "http://x", ['does not have prefix "spiffe://"']],
  ["string suffix", { type: { case: "string", value: { suffix: ".svc" } } }, "a.svc", []],
  ["string contains", { type: { case: "string", value: { contains: "/ns/" } } }, "spiffe://td/sa/x", ['does not contain substring "/ns/"']],
  ["string not_contains", { type: { case: "string", value: { notContains: ".." } } }, "a/../b", ['contains substring ".."']],
  ["string in", { type: { case: "string", value: { in: ["a", "b"] } } }, "c", ['must be in list ["a", "b"]']],
  ["string not_in", { type: { case: "string", value: { notIn: ["x"] } } }, "x", ['must not be in list ["x"]']],
  ["string pattern (RE2 flag group)", { type: { case: "string", value: { pattern: "(?i)^abc$" } } }, "ABC", []],
  ["string ignore_empty skips the empty string", { type: { case: "string", value: { minLen: 3n, ignoreEmpty: true } } }, "", []],
  ["header name (strict)", { type: { case: "string", value: { wellKnown: { case: "wellKnownRegex", value: KnownRegex.HTTP_HEADER_NAME } } } }, "bad header", ["must be a valid HTTP header name"]],
  ["header value (not strict) allows tabs, not newlines", { type: { case: "string", value: { strict: false, wellKnown: { case: "wellKnownRegex", value: KnownRegex.HTTP_HEADER_VALUE } } } }, "a\nb", ["must be a valid HTTP header value"]],
  ["hostname", { type: { case: "string", value: { wellKnown: { case: "hostname", value: true } } } }, "-bad.example", ["must be a valid hostname"]],
  ["ipv6", { type: { case: "string", value: { wellKnown: { case: "ipv6", value: true } } } }, "10.0.0.1", ["must be a valid IPv6 address"]],
  ["address accepts an IP or a host", { type: { case: "string", value: { wellKnown: { case: "address", value: true } } } }, "istiod.istio-system.svc", []],
  ["uri", { type: { case: "string", value: { wellKnown: { case: "uri", value: true } } } }, "not a uri", ["must be a valid URI"]],
  ["uuid", { type: { case: "string", value: { wellKnown: { case: "uuid", value: true } } } }, "123", ["must be a valid UUID"]],
  ["bytes min_len", { type: { case: "bytes", value: { minLen: 2n } } }, new Uint8Array([1]), ["length must be at least 2 bytes"]],
  ["bytes prefix", { type: { case: "bytes", value: { prefix: new Uint8Array([0xca]) } } }, new Uint8Array([0xfe, 0xca]), ["does not have prefix 0xca"]],
  ["bytes ipv4", { type: { case: "bytes", value: { wellKnown: { case: "ipv4", value: true } } } }, new Uint8Array(16), ["must be a valid IPv4 address in byte form"]],
  ["uint32 gt", { type: { case: "uint32", value: { gt: 0 } } }, 0, ["must be greater than 0"]],
  ["uint32 gte/lte range", { type: { case: "uint32", value: { gte: 1, lte: 65535 } } }, 70000, ["must be inside range [1, 65535]"]],
  ["int32 exclusive range (gt >= lt) is an outside range", { type: { case: "int32", value: { gt: 10, lt: 5 } } }, 7, ["must be outside range [5, 10]"]],
  ["int32 exclusive range passes outside", { type: { case: "int32", value: { gt: 10, lt: 5 } } }, 11, []],
  ["int64 (bigint) lt", { type: { case: "int64", value: { lt: 100n } } }, 100n, ["must be less than 100"]],
  ["uint64 in", { type: { case: "uint64", value: { in: [1n, 2n] } } }, 3n, ["must be in list [1, 2]"]],
  ["sint64 not_in", { type: { case: "sint64", value: { notIn: [-1n] } } }, -1n, ["must not be in list [-1]"]],
  ["fixed32 const", { type: { case: "fixed32", value: { const: 7 } } }, 8, ["must equal 7"]],
  ["double gte", { type: { case: "double", value: { gte: 0.5 } } }, 0.25, ["must be greater than or equal to 0.5"]],
  ["float lte", { type: { case: "float", value: { lte: 1 } } }, 1.5, ["must be less than or equal to 1"]],
  ["wrapper (UInt32Value) gt checks the inner value", { type: { case: "uint32", value: { gt: 0 } } }, { value: 0 }, ["must be greater than 0"]],
  ["bool const", { type: { case: "bool", value: { const: true } } }, false, ["must equal true"]],
  ["enum defined_only", { type: { case: "enum", value: { definedOnly: true } } }, 9, ["must be one of the defined enum values (got 9)"], { enumValues: [0, 1, 2] }],
  ["enum defined_only (a defined value)", { type: { case: "enum", value: { definedOnly: true } } }, 2, [], { enumValues: [0, 1, 2] }],
  ["enum in", { type: { case: "enum", value: { in: [1, 2] } } }, 0, ["must be in list [1, 2]"]],
  ["duration gt", { type: { case: "duration", value: { gt: dur(0) } } }, dur(0), ["must be greater than 0s"]],
  ["duration lte with nanos", { type: { case: "duration", value: { lte: dur(0, 1_000_000) } } }, dur(0, 2_000_000), ["must be less than or equal to 0.001s"]],
  ["duration in", { type: { case: "duration", value: { in: [dur(1), dur(2)] } } }, dur(3), ["must be in list [1s, 2s]"]],
  ["timestamp lt_now", { type: { case: "timestamp", value: { ltNow: true } } }, timestampFromMs(Date.now() + 3_600_000), ["must be less than now"]],
  ["timestamp within", { type: { case: "timestamp", value: { within: dur(60) } } }, timestampFromMs(Date.now() - 3_600_000), ["must be within 60s of now"]],
  ["timestamp gt", { type: { case: "timestamp", value: { gt: timestampFromMs(0) } } }, timestampFromMs(0), ["must be greater than 1970-01-01T00:00:00.000Z"]],
  [
    "any in",
    { type: { case: "any", value: { in: ["type.googleapis.com/envoy.config.cluster.v3.Cluster"] } } },
    anyPack(DurationSchema, dur(1)),
    ['type URL must be in list ["type.googleapis.com/envoy.config.cluster.v3.Cluster"]'],
  ],
  ["any in (allowed)", { type: { case: "any", value: { in: ["type.googleapis.com/envoy.config.cluster.v3.Cluster"] } } }, anyPack(ClusterSchema, create(ClusterSchema)), []],
];

for (const [name, rules, value, expected, opts] of cases) {
  test(name, () => assert.equal(check(rules, value, opts), expected));
}

test("message/duration/any required set the required flag; skip is kept", () => {
  assert.ok(compileFieldRules(create(FieldRulesSchema, { message: { required: true } }), undefined, false).required);
  assert.ok(compileFieldRules(create(FieldRulesSchema, { type: { case: "duration", value: { required: true } } }), undefined, false).required);
  assert.ok(compileFieldRules(create(FieldRulesSchema, { type: { case: "any", value: { required: true } } }), undefined, false).required);
  assert.ok(compileFieldRules(create(FieldRulesSchema, { message: { skip: true } }), undefined, false).skip);
});

test("repeated and map rules compile to list/map checks with item, key and value rules", () => {
  const rep = compileFieldRules(
    create(FieldRulesSchema, { type: { case: "repeated", value: { minItems: 1n, maxItems: 3n, unique: true, items: { type: { case: "string", value: { minLen: 1n } } } } } }),
    undefined,
    false,
  ).repeated!;
  assert.is(rep.minItems, 1n);
  assert.is(rep.maxItems, 3n);
  assert.ok(rep.unique);
  const out: ValidationIssue[] = [];
  rep.items!.check!("", "f[0]", out);
  assert.equal(out, [{ path: "f[0]", message: "length must be at least 1 characters" }]);
  const map = compileFieldRules(
    create(FieldRulesSchema, { type: { case: "map", value: { minPairs: 1n, keys: { type: { case: "string", value: { prefix: "x-" } } } } } }),
    undefined,
    false,
  ).map!;
  assert.is(map.minPairs, 1n);
  const mo: ValidationIssue[] = [];
  map.keys!.check!("y", 'f["y"]', mo);
  assert.equal(mo.map((i) => i.message), ['does not have prefix "x-"']);
});

test("patterns are compiled once and cached", () => {
  assert.is(compilePattern("^[^\\x00\\n\\r]*$"), compilePattern("^[^\\x00\\n\\r]*$"));
  assert.ok(compilePattern("^a\\z")!.test("a"));
});

test.run();
