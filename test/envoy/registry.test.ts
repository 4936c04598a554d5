// envoyTypeRegistry holds every generated file (all types an Any can carry).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { envoyRegistryFiles, envoyTypeRegistry } from "../../src/envoy/index.js";

function pbFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? pbFiles(p) : n.endsWith("_pb.ts") ? [p] : [];
  });
}

test("every file under gen/ is in the registry (add new files to src/envoy/type-registry.ts)", () => {
  const inRegistry = new Set(envoyRegistryFiles);
  const missing = pbFiles("gen")
    .map((f) => f.replace(/^gen\//, "").replace(/_pb\.ts$/, ""))
    .filter((proto) => !inRegistry.has(proto));
  assert.equal(missing, []);
});

test("the registry resolves Envoy, xDS and well-known types", () => {
  for (const t of [
    "envoy.config.bootstrap.v3.Bootstrap",
    "envoy.admin.v3.ConfigDump",
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "envoy.config.grpc_credential.v3.FileBasedMetadataConfig",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "google.protobuf.Struct",
    "google.protobuf.Duration",
  ]) {
    assert.ok(envoyTypeRegistry.getMessage(t), t);
  }
});

test.run();
