// fast-check arbitraries shared by the fuzz tests (test/reliability/fuzz-*.test.ts)
// and the 100k fuzz bench (bench/fuzz.bench.ts): hostile tokens, CSRs, mesh YAML and
// xDS requests.
import fc from "fast-check";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DeltaDiscoveryRequestSchema, DiscoveryRequestSchema } from "../../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { defaultMeshYaml } from "../../../src/mesh/index.js";

export type SotwInit = MessageInitShape<typeof DiscoveryRequestSchema>;
export type DeltaInit = MessageInitShape<typeof DeltaDiscoveryRequestSchema>;

export const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
export const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export interface Mutation {
  at: number;
  op: "flip" | "delete" | "insert";
  ch: string;
}

/** Flips, deletes or inserts characters of `text` at generated places. */
export const mutationOf = (text: string, alphabet: string): fc.Arbitrary<Mutation[]> =>
  fc.array(
    fc.record({
      at: fc.nat({ max: text.length - 1 }),
      op: fc.constantFrom("flip" as const, "delete" as const, "insert" as const),
      ch: fc.constantFrom(...alphabet.split("")),
    }),
    { minLength: 1, maxLength: 4 },
  );

export function applyMutations(text: string, muts: Mutation[]): string {
  let s = text;
  for (const m of muts) {
    const at = Math.min(m.at, Math.max(0, s.length - 1));
    if (m.op === "delete") s = s.slice(0, at) + s.slice(at + 1);
    else if (m.op === "insert") s = s.slice(0, at) + m.ch + s.slice(at);
    else s = s.slice(0, at) + (s[at] === m.ch ? (m.ch === "A" ? "B" : "A") : m.ch) + s.slice(at + 1);
  }
  return s;
}

/** Strings that are not tokens: any text, base64url-ish text, base64. */
export const randomTokenArb: fc.Arbitrary<string> = fc.oneof(fc.string(), fc.string({ unit: fc.constantFrom(...B64URL.split("")) }), fc.base64String());

/** A valid token with a few characters flipped, deleted or inserted. */
export const mutatedTokenArb = (validToken: string): fc.Arbitrary<string> => mutationOf(validToken, B64URL).map((m) => applyMutations(validToken, m));

const csrPem = (body: string) => `-----BEGIN CERTIFICATE REQUEST-----\n${body}\n-----END CERTIFICATE REQUEST-----\n`;

/** Random PEM text, random DER in PEM, mutations of a valid CSR, and plain strings. */
export const csrArb = (validCsrPem: string): fc.Arbitrary<string> => {
  const body = validCsrPem.split("\n").filter((l) => !l.startsWith("-----")).join("");
  return fc.oneof(
    fc.string().map(csrPem),
    fc.uint8Array({ maxLength: 400 }).map((b) => csrPem(Buffer.from(b).toString("base64"))),
    mutationOf(body, B64).map((m) => csrPem(applyMutations(body, m))),
    fc.string(),
  );
};

/** YAML-like text, any text, and mutations of the sample mesh. */
export const meshYamlArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789:-[]{}, \n\"'#&*!|>%@`".split("")) }),
  fc.string(),
  mutationOf(defaultMeshYaml, " :-\n[]{}0123456789abcxyz").map((m) => applyMutations(defaultMeshYaml, m)),
);

export const SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
export const TYPES = [
  SECRET_TYPE,
  "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  "type.googleapis.com/envoy.config.listener.v3.Listener",
  "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  "",
  "type.googleapis.com/nope",
];
export const SIDECAR_NODE = "sidecar~127.0.0.1~sleep-1.foo~foo.svc.cluster.local";
export const NAMES = ["default", "ROOTCA", "spiffe://cluster.local", "spiffe://cluster.local/ns/foo/sa/sleep", "*", "", "outbound|8000||httpbin.foo.svc.cluster.local"];
export const nameArb = fc.oneof(fc.constantFrom(...NAMES), fc.string({ maxLength: 40 }));
export const nodeArb = fc.oneof(fc.constant(undefined), fc.record({ id: fc.oneof(fc.constant(SIDECAR_NODE), fc.string({ maxLength: 60 })) }));

/** Any DiscoveryRequest: random node, type (often wrong), names, versions, nonces, error details. */
export const sotwArb: fc.Arbitrary<SotwInit> = fc.record({
  node: nodeArb,
  typeUrl: fc.oneof(fc.constantFrom(...TYPES), fc.string({ maxLength: 30 })),
  resourceNames: fc.array(nameArb, { maxLength: 6 }),
  versionInfo: fc.oneof(fc.constant(""), fc.string({ maxLength: 12 })),
  responseNonce: fc.oneof(fc.constant(""), fc.string({ maxLength: 12 }), fc.constantFrom("1", "2", "3")),
  errorDetail: fc.option(fc.record({ code: fc.integer({ min: -5, max: 20 }), message: fc.string({ maxLength: 40 }) }), { nil: undefined }),
}) as fc.Arbitrary<SotwInit>;

/** Any DeltaDiscoveryRequest. */
export const deltaArb: fc.Arbitrary<DeltaInit> = fc.record({
  node: nodeArb,
  typeUrl: fc.oneof(fc.constantFrom(...TYPES), fc.string({ maxLength: 30 })),
  resourceNamesSubscribe: fc.array(nameArb, { maxLength: 5 }),
  resourceNamesUnsubscribe: fc.array(nameArb, { maxLength: 3 }),
  initialResourceVersions: fc.dictionary(nameArb, fc.string({ maxLength: 8 }), { maxKeys: 3 }),
  responseNonce: fc.oneof(fc.constant(""), fc.string({ maxLength: 12 })),
  errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string({ maxLength: 40 }) }), { nil: undefined }),
}) as fc.Arbitrary<DeltaInit>;

/**
 * Requests that keep a stream alive most of the time (a valid type of `types`, random
 * names, nonces, versions, NACKs), with a hostile `sotwArb` one time in `hostileOneIn`: many requests
 * reach the server's protocol state machine instead of only its first check.
 */
export const plausibleSotwArb = (types: string[], hostileOneIn = 20): fc.Arbitrary<SotwInit> =>
  fc.oneof(
    { weight: hostileOneIn - 1, arbitrary: fc.record({
      typeUrl: fc.constantFrom(...types),
      resourceNames: fc.array(nameArb, { maxLength: 6 }),
      versionInfo: fc.oneof(fc.constant(""), fc.string({ maxLength: 12 })),
      responseNonce: fc.oneof(fc.constant(""), fc.nat({ max: 40 }).map(String), fc.string({ maxLength: 12 })),
      errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string({ maxLength: 40 }) }), { nil: undefined, freq: 5 }),
    }) as fc.Arbitrary<SotwInit> },
    { weight: 1, arbitrary: sotwArb },
  );

/** The delta counterpart of plausibleSotwArb. */
export const plausibleDeltaArb = (types: string[], hostileOneIn = 20): fc.Arbitrary<DeltaInit> =>
  fc.oneof(
    { weight: hostileOneIn - 1, arbitrary: fc.record({
      typeUrl: fc.constantFrom(...types),
      resourceNamesSubscribe: fc.array(nameArb, { maxLength: 4 }),
      resourceNamesUnsubscribe: fc.array(nameArb, { maxLength: 2 }),
      responseNonce: fc.oneof(fc.constant(""), fc.nat({ max: 40 }).map(String), fc.string({ maxLength: 12 })),
      errorDetail: fc.option(fc.record({ code: fc.integer({ min: 0, max: 16 }), message: fc.string({ maxLength: 40 }) }), { nil: undefined, freq: 5 }),
    }) as fc.Arbitrary<DeltaInit> },
    { weight: 1, arbitrary: deltaArb },
  );
