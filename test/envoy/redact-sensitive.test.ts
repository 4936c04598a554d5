// Envoy's admin redacts sensitive fields before printing a config; meshkey's
// config dumps and the diff against a live dump do the same.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { create } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { FileBasedMetadataConfigSchema } from "../../gen/envoy/config/grpc_credential/v3/file_based_metadata_pb.js";
import { SecretSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { GrpcService_GoogleGrpc_CallCredentialsSchema } from "../../gen/envoy/config/core/v3/grpc_service_pb.js";
import { canonicalMessageJson, redactSensitive } from "../../src/envoy/index.js";

test("a token file name inside an Any prints as [redacted], the header key stays", () => {
  const creds = create(GrpcService_GoogleGrpc_CallCredentialsSchema, {
    credentialSpecifier: {
      case: "fromPlugin",
      value: {
        name: "envoy.grpc_credentials.file_based_metadata",
        configType: {
          case: "typedConfig",
          value: anyPack(FileBasedMetadataConfigSchema, create(FileBasedMetadataConfigSchema, { secretData: { specifier: { case: "filename", value: "/run/token" } }, headerKey: "h" })),
        },
      },
    },
  });
  const red = redactSensitive(GrpcService_GoogleGrpc_CallCredentialsSchema, creds);
  const json = JSON.stringify(canonicalMessageJson(GrpcService_GoogleGrpc_CallCredentialsSchema, red));
  assert.match(json, /"secret_data":\{"filename":"\[redacted\]"\},"header_key":"h"/);
  // The original is untouched (snapshots share their packed resources with ADS streams).
  const v = creds.credentialSpecifier.value as { configType: { value: Parameters<typeof anyUnpack>[0] } };
  assert.is((anyUnpack(v.configType.value, FileBasedMetadataConfigSchema)!.secretData!.specifier.value as string), "/run/token");
});

test("a private key's bytes print as [redacted], the certificate chain stays", () => {
  const s = create(SecretSchema, {
    name: "default",
    type: {
      case: "tlsCertificate",
      value: {
        certificateChain: { specifier: { case: "inlineBytes", value: new TextEncoder().encode("CERT") } },
        privateKey: { specifier: { case: "inlineBytes", value: new TextEncoder().encode("KEY") } },
      },
    },
  });
  const json = canonicalMessageJson(SecretSchema, redactSensitive(SecretSchema, s)) as { tls_certificate: Record<string, { inline_bytes: string }> };
  assert.is(Buffer.from(json.tls_certificate.private_key!.inline_bytes, "base64").toString(), "[redacted]");
  assert.is(Buffer.from(json.tls_certificate.certificate_chain!.inline_bytes, "base64").toString(), "CERT");
});

test.run();
