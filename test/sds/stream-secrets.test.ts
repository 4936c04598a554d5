// StreamSecrets, FetchSecrets and DeltaSecrets over the Unix socket, seen by a real
// grpc-js client carrying a service-account JWT, against the real CA.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import * as net from "node:net";
import { toBinary } from "@bufbuild/protobuf";
import { DiscoveryRequestSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import {
  ackOf,
  deltaRequest,
  metricValue,
  openssl,
  pemBlocks,
  secretsOf,
  sotwRequest,
  startAgent,
  tlsOf,
  trustedCaOf,
  type AgentEnv,
} from "./sds-harness.js";

let env: AgentEnv;
let token: string;
const SPIFFE = "spiffe://cluster.local/ns/foo/sa/httpbin";

test.before(async () => {
  env = await startAgent();
  token = await env.signer.mint("foo", "httpbin");
});
test.after(async () => {
  await env.close();
});

test("default and ROOTCA on separate streams: a chain that openssl verifies against the root", async () => {
  const cred = { kind: "header", token } as const;
  const a = env.client.stream(cred);
  const b = env.client.stream(cred);
  a.send(sotwRequest(["default"]));
  b.send(sotwRequest(["ROOTCA"]));
  const [ra, rb] = await Promise.all([a.next(), b.next()]);
  const [sa] = secretsOf(ra);
  const [sb] = secretsOf(rb);
  assert.is(ra.resources.length, 1);
  assert.is(rb.resources.length, 1);
  assert.is(sa!.name, "default");
  assert.is(sb!.name, "ROOTCA");
  const { chainPem, keyPem } = tlsOf(sa!);
  const root = trustedCaOf(sb!);
  assert.is(root.trim(), env.ca.rootCertPem.trim());
  const blocks = pemBlocks(chainPem);
  assert.ok(blocks.length >= 2, "leaf then the chain up to the root");
  const rootFile = join(env.dir, "rootca.pem");
  const leafFile = join(env.dir, "leaf.pem");
  const untrusted = join(env.dir, "untrusted.pem");
  writeFileSync(rootFile, root);
  writeFileSync(leafFile, blocks[0]!);
  writeFileSync(untrusted, blocks.slice(1).join("\n"));
  const out = openssl(["verify", "-CAfile", rootFile, "-untrusted", untrusted, leafFile]);
  assert.match(out, /OK/);
  // The key matches the leaf (same public key), and is EC P-256 by default.
  const pubFromKey = openssl(["pkey", "-pubout"], keyPem);
  const pubFromCert = openssl(["x509", "-noout", "-pubkey"], blocks[0]!);
  assert.is(pubFromKey, pubFromCert);
  assert.match(openssl(["pkey", "-noout", "-text"], keyPem), /prime256v1|P-256/);
  a.close();
  b.close();
});

test("the leaf carries the caller's SPIFFE ID as its only URI SAN, and both TLS EKUs", async () => {
  const res = await env.client.fetch({ kind: "header", token }, ["default"]);
  const leaf = pemBlocks(tlsOf(secretsOf(res)[0]!).chainPem)[0]!;
  const text = openssl(["x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage"], leaf);
  assert.match(text, `URI:${SPIFFE}`);
  assert.is((text.match(/URI:/g) ?? []).length, 1);
  assert.match(text, /TLS Web Server Authentication/);
  assert.match(text, /TLS Web Client Authentication/);
});

test("the workload's own SPIFFE ID and spiffe://<trust-domain> are served under the requested names", async () => {
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest([SPIFFE]));
  const r1 = await s.next();
  const [cert] = secretsOf(r1);
  assert.is(cert!.name, SPIFFE);
  assert.ok(tlsOf(cert!).chainPem.includes("BEGIN CERTIFICATE"));
  const t = env.client.stream({ kind: "header", token });
  t.send(sotwRequest(["spiffe://cluster.local"]));
  const [bundle] = secretsOf(await t.next());
  assert.is(bundle!.name, "spiffe://cluster.local");
  assert.is(trustedCaOf(bundle!).trim(), env.ca.rootCertPem.trim());
  s.close();
  t.close();
});

test("another workload's SPIFFE ID is not served (never trust a name the client asks for)", async () => {
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["spiffe://cluster.local/ns/bar/sa/sleep"]));
  assert.is(await s.nextOrUndefined(400), undefined);
  s.close();
});

test("an ACK brings no further push; a new version is sent only after it", async () => {
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  assert.ok(r1.nonce !== "");
  assert.ok(r1.versionInfo !== "");
  s.send(ackOf(r1, ["default"]));
  assert.is(await s.nextOrUndefined(500), undefined, "no resend after an ACK");
  // A renewal (same stream, no reconnect) is pushed with a new version and nonce.
  await env.cache.rotate(SPIFFE);
  const r2 = await s.next();
  assert.is.not(r2.nonce, r1.nonce);
  assert.is.not(r2.versionInfo, r1.versionInfo);
  const serial = (r: typeof r1) => openssl(["x509", "-noout", "-serial"], pemBlocks(tlsOf(secretsOf(r)[0]!).chainPem)[0]!);
  assert.is.not(serial(r2), serial(r1));
  s.close();
});

test("several renewals before an ACK collapse into one push", async () => {
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  await env.cache.rotate(SPIFFE);
  await env.cache.rotate(SPIFFE);
  await env.cache.rotate(SPIFFE);
  assert.is(await s.nextOrUndefined(300), undefined, "nothing while the first response is un-ACKed");
  s.send(ackOf(r1, ["default"]));
  const r2 = await s.next();
  assert.is(await s.nextOrUndefined(300), undefined, "exactly one push for the three renewals");
  const latest = env.cache.debug().identities.find((i) => i.spiffeId === SPIFFE)!.serialHex!;
  const leaf = pemBlocks(tlsOf(secretsOf(r2)[0]!).chainPem)[0]!;
  assert.match(openssl(["x509", "-noout", "-serial"], leaf).toLowerCase(), latest.toLowerCase().replace(/^0+/, ""));
  s.close();
});

test("a NACK is recorded and the same secret is not resent; a stale nonce is ignored", async () => {
  const before = await metricValue(env.registry, "meshkey_sds_nacks_total");
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"]));
  const r1 = await s.next();
  s.send(ackOf(r1, ["default"], "bad key"));
  assert.is(await s.nextOrUndefined(500), undefined, "no resend of the rejected version (no spin)");
  assert.is(await metricValue(env.registry, "meshkey_sds_nacks_total"), before + 1);
  const dbg = env.server.debug();
  const ident = dbg.identities.find((i) => i.spiffeId === SPIFFE)!;
  assert.is(ident.lastNack?.message, "bad key");
  assert.equal(ident.lastNack?.names, ["default"]);
  // A stale nonce (from nothing we sent) changes nothing.
  s.send(sotwRequest(["default"], { responseNonce: "not-a-nonce", versionInfo: "0" }));
  assert.is(await s.nextOrUndefined(300), undefined);
  // A newer certificate is still delivered after a NACK.
  await env.cache.rotate(SPIFFE);
  const r2 = await s.next();
  assert.is.not(r2.nonce, r1.nonce);
  s.close();
});

test("an unknown name is not answered, is reported, and does not end the stream", async () => {
  const before = await metricValue(env.registry, "meshkey_sds_unknown_names_total");
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["no-such-secret"]));
  assert.is(await s.nextOrUndefined(400), undefined);
  assert.is(await metricValue(env.registry, "meshkey_sds_unknown_names_total"), before + 1);
  assert.ok(env.server.debug().unknownNames.some((u) => u.name === "no-such-secret"));
  // The same stream can still ask for a real one.
  s.send(sotwRequest(["no-such-secret", "default"]));
  const r = await s.next();
  assert.equal(secretsOf(r).map((x) => x.name), ["default"]);
  s.close();
});

test("FetchSecrets answers default and ROOTCA in one unary call", async () => {
  const res = await env.client.fetch({ kind: "header", token }, ["default", "ROOTCA", "unknown"]);
  assert.equal(secretsOf(res).map((s) => s.name), ["default", "ROOTCA"]);
  assert.ok(res.versionInfo !== "");
});

test("DeltaSecrets: subscribe sends each name once with its version; unsubscribe stops updates", async () => {
  const d = env.client.delta({ kind: "header", token });
  d.send(deltaRequest({ resourceNamesSubscribe: ["default", "ROOTCA"] }));
  const got = new Map<string, string>();
  let last;
  while (got.size < 2) {
    last = await d.next();
    for (const r of last.resources) got.set(r.name, r.version);
    d.send(deltaRequest({ responseNonce: last.nonce }));
  }
  assert.ok(got.get("default"));
  assert.ok(got.get("ROOTCA"));
  assert.is(await d.nextOrUndefined(300), undefined, "nothing more after the ACKs");
  d.send(deltaRequest({ resourceNamesUnsubscribe: ["default"] }));
  await new Promise((r) => setTimeout(r, 100));
  await env.cache.rotate(SPIFFE);
  assert.is(await d.nextOrUndefined(400), undefined, "no push for an unsubscribed name");
  // Subscribing again delivers the current certificate (a new version).
  d.send(deltaRequest({ resourceNamesSubscribe: ["default"] }));
  const again = await d.next();
  assert.equal(again.resources.map((r) => r.name), ["default"]);
  assert.is.not(again.resources[0]!.version, got.get("default"));
  d.close();
});

test("DeltaSecrets: a resource the client already has (initial_resource_versions) is not resent", async () => {
  const first = env.client.delta({ kind: "header", token });
  first.send(deltaRequest({ resourceNamesSubscribe: ["ROOTCA"] }));
  const r = await first.next();
  const version = r.resources[0]!.version;
  first.close();
  const again = env.client.delta({ kind: "header", token });
  again.send(deltaRequest({ resourceNamesSubscribe: ["ROOTCA"], initialResourceVersions: { ROOTCA: version } }));
  assert.is(await again.nextOrUndefined(400), undefined);
  again.close();
});

test("DeltaSecrets: a NACKed version is not resent, a newer one is", async () => {
  const d = env.client.delta({ kind: "header", token });
  d.send(deltaRequest({ resourceNamesSubscribe: ["default"] }));
  const r1 = await d.next();
  d.send(deltaRequest({ responseNonce: r1.nonce, errorDetail: { code: 3, message: "rejected" } }));
  assert.is(await d.nextOrUndefined(400), undefined);
  await env.cache.rotate(SPIFFE);
  const r2 = await d.next();
  assert.is.not(r2.resources[0]!.version, r1.resources[0]!.version);
  d.close();
});

test("a changed root is pushed on every open ROOTCA stream", async () => {
  let root = env.ca.rootCertPem;
  const local = await startAgent({ cache: { rootCertPem: () => root } });
  try {
    const t = await local.signer.mint("foo", "httpbin");
    const streams = [local.client.stream({ kind: "header", token: t }), local.client.stream({ kind: "header", token: t })];
    for (const s of streams) s.send(sotwRequest(["ROOTCA"]));
    const firsts = await Promise.all(streams.map((s) => s.next()));
    for (const [i, s] of streams.entries()) s.send(ackOf(firsts[i]!, ["ROOTCA"]));
    root = `${local.ca.rootCertPem.trim()}\n${env.ca.rootCertPem.trim()}\n`; // a bundle during a root migration
    local.cache.notifyRootChanged();
    for (const s of streams) {
      const r = await s.next();
      assert.is(pemBlocks(trustedCaOf(secretsOf(r)[0]!)).length, 2);
      s.close();
    }
  } finally {
    await local.close();
  }
});

test("secrets go out uncompressed on the local socket, although the client accepts gzip", async () => {
  // A raw HTTP/2 gRPC call, to see the response headers grpc-js hides.
  const session = http2.connect("http://localhost", { createConnection: () => net.connect(env.socketPath) });
  try {
    const body = toBinary(DiscoveryRequestSchema, sotwRequest(["default"]));
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const req = session.request({
      ":method": "POST",
      ":path": "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-accept-encoding": "gzip",
      "istio_sds_credentials_header-bin": Buffer.from(token).toString("base64"),
    });
    req.write(frame);
    const [headers, first] = await Promise.all([
      new Promise<http2.IncomingHttpHeaders>((r) => req.once("response", r)),
      new Promise<Buffer>((r) => req.once("data", r)),
    ]);
    assert.is(headers[":status"], 200);
    assert.is(first[0], 0, "the message's compressed flag is off");
    req.close();
  } finally {
    session.close();
  }
});

test("a wrong type URL ends the stream with INVALID_ARGUMENT", async () => {
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"], { typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster" }));
  const st = await s.status;
  assert.is(st.code, grpc.status.INVALID_ARGUMENT);
  assert.match(st.details, /type URL/);
});

test("debug snapshot lists identities with serial, expiry and streams", async () => {
  const s = env.client.stream({ kind: "header", token });
  s.send(sotwRequest(["default"]));
  await s.next();
  const dbg = JSON.parse(JSON.stringify(env.server.debug()));
  const ident = dbg.identities.find((i: { spiffeId: string }) => i.spiffeId === SPIFFE);
  assert.ok(ident.serialHex);
  assert.ok(Date.parse(ident.notAfter) > Date.now());
  assert.ok(ident.streams >= 1);
  assert.ok(dbg.streams.some((x: { names: string[] }) => x.names.includes("default")));
  assert.ok((await metricValue(env.registry, "meshkey_sds_active_streams")) >= 1);
  assert.ok((await metricValue(env.registry, "meshkey_sds_cert_expiry_seconds")) > 0);
  s.close();
});

test.run();
