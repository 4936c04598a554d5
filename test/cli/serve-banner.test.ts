// The summary `meshkey serve` prints once ready: every address, including the mTLS
// ADS one, and the sidecar and pilot recipes that point an Envoy at it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { describeRunningMeshkey, type RunningMeshkey } from "../../src/cli/meshkey-process.js";
import { resolveServeConfig } from "../../src/cli/serve-config.js";

const running = (addresses: RunningMeshkey["addresses"]): RunningMeshkey =>
  ({ config: resolveServeConfig(["--state-dir", "/tmp/mk"]), addresses, rootCertPem: undefined }) as unknown as RunningMeshkey;

const all = { sds: "unix:/tmp/mk/uds_path", xds: "127.0.0.1:15010", xdsTls: "127.0.0.1:15011", ca: "127.0.0.1:15012", admin: "127.0.0.1:15014" };

test("the mTLS ADS address is listed with the identity it presents", () => {
  const text = describeRunningMeshkey(running(all));
  assert.match(text, /^ {2}ADS {12}127\.0\.0\.1:15010/m);
  assert.match(text, /^ {2}ADS-mTLS {7}127\.0\.0\.1:15011 .*spiffe:\/\/cluster\.local\/ns\/istio-system\/sa\/istiod/m);
});

test("the sidecar recipe names --xds-tls with the mTLS address, and a pilot recipe runs as istio-system/istiod in front of the plaintext port", () => {
  const text = describeRunningMeshkey(running(all));
  assert.match(text, "--xds-tls and use --xds-address 127.0.0.1:15011");
  assert.match(text, "meshkey token --namespace istio-system --service-account istiod --state-dir /tmp/mk");
  assert.match(text, /meshkey bootstrap --role pilot .*\n.*--local-port 15010 /);
  assert.match(text, "--sds-socket /tmp/mk/uds_path");
});

test("without the CA in process there is no mTLS ADS line and no pilot recipe", () => {
  const { xdsTls: _none, ...rest } = all;
  const text = describeRunningMeshkey(running(rest));
  assert.not.match(text, "ADS-mTLS");
  assert.not.match(text, "--role pilot");
});

test.run();
