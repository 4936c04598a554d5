// On the mTLS ADS port, the node a stream claims to be must be the identity of its
// client certificate: table-driven over the node id and metadata forms.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Code, ConnectError } from "@connectrpc/connect";
import { checkNodeIdentity } from "../../src/xds/index.js";

const SLEEP_FOO = "spiffe://cluster.local/ns/foo/sa/sleep";
const sidecarId = (ns: string, pod = "sleep-1") => `sidecar~127.30.0.1~${pod}.${ns}~${ns}.svc.cluster.local`;

const cases: Array<{ name: string; node: { id: string; metadata?: Record<string, unknown> }; peer: string | undefined; denied?: RegExp }> = [
  { name: "bootstrap metadata matching the certificate is accepted", node: { id: sidecarId("foo"), metadata: { NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep", SPIFFE_ID: SLEEP_FOO, TRUST_DOMAIN: "cluster.local" } }, peer: SLEEP_FOO },
  { name: "a node id alone (namespace, any service account) matching is accepted", node: { id: sidecarId("foo") }, peer: SLEEP_FOO },
  { name: "another namespace in the node id is refused", node: { id: sidecarId("bar") }, peer: SLEEP_FOO, denied: /claims identity spiffe:\/\/cluster\.local\/ns\/bar\/sa\/\*.*spiffe:\/\/cluster\.local\/ns\/foo\/sa\/sleep/ },
  { name: "another service account in the metadata is refused", node: { id: sidecarId("foo"), metadata: { SERVICE_ACCOUNT: "httpbin" } }, peer: SLEEP_FOO, denied: /ns\/foo\/sa\/httpbin.*ns\/foo\/sa\/sleep/ },
  { name: "NAMESPACE metadata overrides the node id and must match", node: { id: sidecarId("foo"), metadata: { NAMESPACE: "bar" } }, peer: SLEEP_FOO, denied: /ns\/bar/ },
  { name: "a SPIFFE_ID that is not the certificate's is refused", node: { id: sidecarId("foo"), metadata: { SPIFFE_ID: "spiffe://cluster.local/ns/foo/sa/admin" } }, peer: SLEEP_FOO, denied: /sa\/admin/ },
  { name: "another trust domain is refused", node: { id: sidecarId("foo"), metadata: { TRUST_DOMAIN: "example.org" } }, peer: SLEEP_FOO, denied: /example\.org/ },
  { name: "a proxyless node with NAMESPACE and SERVICE_ACCOUNT matching is accepted", node: { id: "grpc-client-1", metadata: { GENERATOR: "grpc", NAMESPACE: "foo", SERVICE_ACCOUNT: "sleep" } }, peer: SLEEP_FOO },
  { name: "a node that names no namespace is refused", node: { id: "some-node" }, peer: SLEEP_FOO, denied: /claims no namespace/ },
  { name: "no client certificate identity is refused", node: { id: sidecarId("foo") }, peer: undefined, denied: /no client certificate/ },
  { name: "a certificate identity that is no workload SPIFFE ID is refused", node: { id: sidecarId("foo") }, peer: "spiffe://cluster.local", denied: /is not spiffe/ },
];

for (const c of cases) {
  test(c.name, () => {
    let thrown: unknown;
    try {
      checkNodeIdentity(c.node, c.peer);
    } catch (err) {
      thrown = err;
    }
    if (!c.denied) {
      assert.is(thrown, undefined, String(thrown));
      return;
    }
    assert.instance(thrown, ConnectError);
    assert.is((thrown as ConnectError).code, Code.PermissionDenied);
    assert.match((thrown as ConnectError).rawMessage, c.denied);
  });
}

test.run();
