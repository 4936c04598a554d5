// ADS over mTLS, as istiod's 15012: real Envoy sidecars bootstrapped with
// `meshkey bootstrap --xds-tls --xds-address <serve's ADS-mTLS address>` get their
// listeners and clusters over a TLS connection whose client certificate is the
// SDS `default` one, and serve traffic. A client whose certificate names another
// identity than its node is refused with PERMISSION_DENIED; plaintext is refused.
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { DiscoveryRequestSchema, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { IstioCertificateRequestSchema, IstioCertificateService } from "../../gen/istio/v1/auth/ca_pb.js";
import { createKeyAndCsr } from "../../src/ca/index.js";
import { TypeUrl } from "../../src/xds/index.js";
import { envoySuite, statsMatching } from "../support/envoy.js";
import { createMeshWorld, httpGet, waitForSidecarSynced, type MeshWorld, type Sidecar } from "../support/mesh-world.js";

const test = envoySuite("xds-tls");

let world: MeshWorld;
let sleep: Sidecar;
let httpbin: Sidecar;
let rootPem: string;

const tlsArgs = () => ["--xds-tls", "--xds-address", world.serve.xdsTls!];

test.before(async () => {
  world = await createMeshWorld({ subnet: 31 });
  assert.ok(world.serve.xdsTls, `serve printed no ADS-mTLS address:\n${world.serve.stdout()}`);
  rootPem = readFileSync(join(world.dir, "state", "root-cert.pem"), "utf8");
  const sleepW = await world.workload({ name: "sleep", namespace: "foo", port: 80 });
  const httpbinW = await world.workload({ name: "httpbin", namespace: "bar" });
  world.writeMesh([sleepW, httpbinW]);
  await world.startApp(httpbinW);
  sleep = await world.startSidecar(sleepW, tlsArgs());
  httpbin = await world.startSidecar(httpbinW, tlsArgs());
  await waitForSidecarSynced(sleep.envoy);
  await waitForSidecarSynced(httpbin.envoy);
  await httpbin.envoy.waitFor("httpbin's inbound listener", async () =>
    (await httpbin.envoy.admin("/listeners")).body.includes(`${httpbinW.podIp}:${httpbinW.workloadPort}`),
  );
});

test.after(async () => {
  await world?.close();
});

/** A certificate from the CA (CreateCertificate over TLS) for the identity of the token. */
async function certificateFor(namespace: string, serviceAccount: string): Promise<{ key: string; chain: string }> {
  const { privateKeyPem, csrPem } = await createKeyAndCsr("ec-p256");
  const ca = createClient(
    IstioCertificateService,
    createGrpcTransport({ baseUrl: `https://${world.serve.ca!}`, nodeOptions: { ca: rootPem } }),
  );
  const init: MessageInitShape<typeof IstioCertificateRequestSchema> = { csr: csrPem, validityDuration: 3600n };
  const res = await ca.createCertificate(create(IstioCertificateRequestSchema, init), {
    headers: { authorization: `Bearer ${world.token(namespace, serviceAccount)}` },
  });
  return { key: privateKeyPem, chain: res.certChain.join("") };
}

/** Opens an ADS stream to the mTLS port as `nodeId` and returns the first response, or the error. */
async function firstAdsResponse(
  nodeId: string,
  metadata: Record<string, string>,
  tls: { key?: string; chain?: string; plaintext?: boolean },
): Promise<DiscoveryResponse | ConnectError> {
  const transport = createGrpcTransport({
    baseUrl: `${tls.plaintext ? "http" : "https"}://${world.serve.xdsTls!}`,
    nodeOptions: tls.plaintext
      ? {}
      : { ca: rootPem, servername: "istiod.istio-system.svc", ...(tls.key ? { key: tls.key, cert: tls.chain } : {}) },
  });
  const ads = createClient(AggregatedDiscoveryService, transport);
  const req: MessageInitShape<typeof DiscoveryRequestSchema> = {
    node: { id: nodeId, metadata },
    typeUrl: TypeUrl.Listener,
  };
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 10_000);
  try {
    async function* requests() {
      yield create(DiscoveryRequestSchema, req);
      // Keep the request side open until the answer arrives.
      await new Promise((r) => abort.signal.addEventListener("abort", r));
    }
    for await (const res of ads.streamAggregatedResources(requests(), { signal: abort.signal })) return res;
    return new ConnectError("the stream ended without a response", Code.Unknown);
  } catch (err) {
    return ConnectError.from(err);
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

test("sidecars with --xds-tls get LDS and CDS over an mTLS connection to xds-grpc", async () => {
  for (const envoy of [sleep.envoy, httpbin.envoy]) {
    assert.ok((await envoy.stat("cluster_manager.cds.update_success")) >= 1, "cds.update_success");
    assert.ok((await envoy.stat("listener_manager.lds.update_success")) >= 1, "lds.update_success");
    assert.ok((await envoy.stat("cluster.xds-grpc.ssl.handshake")) > 0, "xds-grpc ssl.handshake");
    const bad = await statsMatching(envoy, /^cluster\.xds-grpc\.ssl\.(fail_verify_san|connection_error|fail_verify_error)$/);
    assert.equal(Object.values(bad).filter((v) => v !== 0), [], `xds-grpc TLS failures: ${JSON.stringify(bad)}`);
  }
  // The bootstrap's xds-grpc cluster really is TLS, to the mTLS port.
  const dump = await sleep.envoy.configDump("?resource=static_clusters");
  const text = JSON.stringify(dump);
  assert.ok(text.includes("UpstreamTlsContext") && text.includes("spiffe://cluster.local/ns/istio-system/sa/istiod"), "xds-grpc has an UpstreamTlsContext checking istiod's SAN");
  assert.ok(text.includes(`"port_value":${world.serve.xdsTls!.split(":")[1]}`), "xds-grpc points at the ADS-mTLS port");
});

test("sleep.foo reaches httpbin.bar with HTTP 200 through both sidecars", async () => {
  const w = sleep.workload;
  const res = await sleep.envoy.waitFor("a 200 through the sidecars", async () => {
    const r = await httpGet(w.podIp, 8000, "httpbin.bar.svc.cluster.local:8000");
    return r.status === 200 ? r : undefined;
  });
  assert.is(JSON.parse(res.body).service, "httpbin.bar");
});

test("a client whose certificate matches its node gets its listeners", async () => {
  const cert = await certificateFor("foo", "sleep");
  const res = await firstAdsResponse(sleep.workload.nodeId, { NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep" }, cert);
  assert.ok(!(res instanceof ConnectError), `refused: ${res instanceof ConnectError ? res.message : ""}`);
  assert.is((res as DiscoveryResponse).typeUrl, TypeUrl.Listener);
});

test("a client presenting another identity's certificate than its node's is refused with PERMISSION_DENIED naming both", async () => {
  const cert = await certificateFor("bar", "httpbin");
  const res = await firstAdsResponse(sleep.workload.nodeId, { NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep" }, cert);
  assert.instance(res, ConnectError);
  const err = res as ConnectError;
  assert.is(err.code, Code.PermissionDenied, err.message);
  assert.match(err.rawMessage, "spiffe://cluster.local/ns/foo/sa/sleep");
  assert.match(err.rawMessage, "spiffe://cluster.local/ns/bar/sa/httpbin");
});

test("a TLS client without a client certificate is refused", async () => {
  const res = await firstAdsResponse(sleep.workload.nodeId, { NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep" }, {});
  assert.instance(res, ConnectError);
  assert.is.not((res as ConnectError).code, Code.PermissionDenied);
});

test("a plaintext client on the mTLS port fails", async () => {
  const res = await firstAdsResponse(sleep.workload.nodeId, { NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep" }, { plaintext: true });
  assert.instance(res, ConnectError, "plaintext got an ADS response from the mTLS port");
});

test.run();
