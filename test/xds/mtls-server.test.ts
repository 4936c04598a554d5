// The ADS server over mTLS, in process: the server certificate is the control
// plane's identity from the CA; a client certificate that chains to the root is
// required, and its SPIFFE ID must be the node's (else PERMISSION_DENIED, both named).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AggregatedDiscoveryService } from "../../gen/envoy/service/discovery/v3/ads_pb.js";
import { DeltaDiscoveryRequestSchema, DiscoveryRequestSchema, type DiscoveryResponse } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import {
  CONTROL_PLANE_IDENTITY,
  controlPlaneDnsName,
  createKeyAndCsr,
  createRenewingServerCertificate,
  openCertificateAuthority,
  spiffeIdOf,
  type CertificateAuthority,
  type RenewingServerCertificate,
} from "../../src/ca/index.js";
import { peerSpiffeId } from "../../src/cli/control-plane.js";
import { createSnapshotCache, startXdsServer, TypeUrl, type RunningXdsServer } from "../../src/xds/index.js";
import { snap } from "./helpers/ads-client.js";

const dir = mkdtempSync(join(tmpdir(), "meshkey-xds-mtls-"));
let ca: CertificateAuthority;
let serverCert: RenewingServerCertificate;
let server: RunningXdsServer;
const SLEEP_NODE = "sidecar~127.30.0.1~sleep-1.foo~foo.svc.cluster.local";

test.before(async () => {
  ca = await openCertificateAuthority({ stateDir: join(dir, "state"), trustDomain: "cluster.local" });
  serverCert = createRenewingServerCertificate({
    ca,
    sans: { uris: [spiffeIdOf("cluster.local", CONTROL_PLANE_IDENTITY)], dnsNames: [controlPlaneDnsName("istio-system")] },
    onRenew: () => {},
    name: "test ADS server",
  });
  const cache = createSnapshotCache();
  cache.setSnapshot(SLEEP_NODE, snap({ CDS: { "outbound|8000||httpbin.bar.svc.cluster.local": "1" } }));
  server = await startXdsServer({
    listen: { host: "127.0.0.1", port: 0 },
    cache,
    tls: { key: serverCert.current.privateKeyPem, cert: serverCert.current.certChainPem, ca: ca.rootCertPem, requestCert: true },
    peerIdentity: peerSpiffeId,
  });
});

test.after(async () => {
  serverCert.stop();
  await server.close(500);
  rmSync(dir, { recursive: true, force: true });
});

async function clientCert(namespace: string, serviceAccount: string): Promise<{ key: string; cert: string }> {
  const { privateKeyPem, csrPem } = await createKeyAndCsr("ec-p256");
  const chain = await ca.sign(csrPem, { namespace, serviceAccount }, 600);
  return { key: privateKeyPem, cert: chain.join("") };
}

/** Opens one SotW stream, sends a request as `nodeId`, and resolves with the first response or the error. */
async function ask(nodeId: string, tls: { key: string; cert: string } | undefined): Promise<DiscoveryResponse | ConnectError> {
  const transport = createGrpcTransport({
    baseUrl: `https://${server.address}`,
    nodeOptions: { ca: ca.rootCertPem, servername: "istiod.istio-system.svc", ...(tls ?? {}) },
  });
  const ads = createClient(AggregatedDiscoveryService, transport);
  const abort = new AbortController();
  const req: MessageInitShape<typeof DiscoveryRequestSchema> = { node: { id: nodeId }, typeUrl: TypeUrl.Cluster };
  async function* requests() {
    yield create(DiscoveryRequestSchema, req);
    await new Promise((r) => abort.signal.addEventListener("abort", r));
  }
  const timer = setTimeout(() => abort.abort(), 5_000);
  try {
    for await (const res of ads.streamAggregatedResources(requests(), { signal: abort.signal })) return res;
    return new ConnectError("ended without a response", Code.Unknown);
  } catch (err) {
    return ConnectError.from(err);
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

test("the server certificate is the control plane's identity, issued by the CA", () => {
  const cert = new X509Certificate(serverCert.current.certChainPem);
  assert.match(cert.subjectAltName ?? "", "URI:spiffe://cluster.local/ns/istio-system/sa/istiod");
  assert.match(cert.subjectAltName ?? "", "DNS:istiod.istio-system.svc");
  assert.ok(cert.verify(new X509Certificate(ca.rootCertPem).publicKey));
});

test("a node whose certificate is its own identity gets its clusters", async () => {
  const res = await ask(SLEEP_NODE, await clientCert("foo", "sleep"));
  assert.ok(!(res instanceof ConnectError), `refused: ${String(res)}`);
  assert.is((res as DiscoveryResponse).resources.length, 1);
});

test("a node claiming another namespace than its certificate's ends with PERMISSION_DENIED naming both", async () => {
  const res = await ask(SLEEP_NODE, await clientCert("bar", "httpbin"));
  assert.instance(res, ConnectError);
  const err = res as ConnectError;
  assert.is(err.code, Code.PermissionDenied, err.message);
  assert.match(err.rawMessage, "ns/foo");
  assert.match(err.rawMessage, "spiffe://cluster.local/ns/bar/sa/httpbin");
});

test("the delta protocol checks the node the same way", async () => {
  const transport = createGrpcTransport({
    baseUrl: `https://${server.address}`,
    nodeOptions: { ca: ca.rootCertPem, servername: "istiod.istio-system.svc", ...(await clientCert("foo", "admin")) },
  });
  const ads = createClient(AggregatedDiscoveryService, transport);
  const req: MessageInitShape<typeof DeltaDiscoveryRequestSchema> = {
    node: { id: SLEEP_NODE, metadata: { SERVICE_ACCOUNT: "sleep" } },
    typeUrl: TypeUrl.Cluster,
  };
  const abort = new AbortController();
  async function* requests() {
    yield create(DeltaDiscoveryRequestSchema, req);
    await new Promise((r) => abort.signal.addEventListener("abort", r));
  }
  let error: ConnectError | undefined;
  try {
    for await (const _res of ads.deltaAggregatedResources(requests(), { signal: AbortSignal.any([abort.signal, AbortSignal.timeout(5_000)]) })) break;
  } catch (err) {
    error = ConnectError.from(err);
  } finally {
    abort.abort();
  }
  assert.is(error?.code, Code.PermissionDenied, String(error));
  assert.match(error!.rawMessage, "spiffe://cluster.local/ns/foo/sa/sleep");
  assert.match(error!.rawMessage, "spiffe://cluster.local/ns/foo/sa/admin");
});

test("a client without a certificate cannot open a stream", async () => {
  const res = await ask(SLEEP_NODE, undefined);
  assert.instance(res, ConnectError);
  assert.is.not((res as ConnectError).code, Code.Canceled);
});

test.run();
