// The two config sources the translated resources point at: ADS (clusters' EDS and
// listeners' RDS; one shared message) and the SDS node agent (TLS contexts' secrets).
// The SDS one is built afresh for each secret from the options: the encoding is
// deterministic, so equal options give byte-identical config sources everywhere
// (Envoy opens one SDS stream per secret name and distinct config source, so two
// differing sources for one name would mean two streams).
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import {
  ApiConfigSource_ApiType,
  ApiVersion,
  ConfigSourceSchema,
  type ConfigSource,
} from "../../../gen/envoy/config/core/v3/config_source_pb.js";
import { FileBasedMetadataConfigSchema } from "../../../gen/envoy/config/grpc_credential/v3/file_based_metadata_pb.js";
import { SdsSecretConfigSchema, type SdsSecretConfig } from "../../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import type { GrpcServiceSchema } from "../../../gen/envoy/config/core/v3/grpc_service_pb.js";
import { SDS_TOKEN_HEADER } from "../../spiffe/index.js";
import type { TranslateOptions } from "./resource-set.js";

export const FILE_BASED_METADATA = "envoy.grpc_credentials.file_based_metadata";
export const SDS_CLUSTER_NAME = "sds-grpc";

export const adsConfigSource: ConfigSource = create(ConfigSourceSchema, {
  configSourceSpecifier: { case: "ads", value: {} },
  resourceApiVersion: ApiVersion.V3,
});

export function sdsConfigSource(opts: TranslateOptions): ConfigSource {
  const mode = opts.sdsMode ?? "google_grpc";
  const grpcService: MessageInitShape<typeof GrpcServiceSchema> =
    mode === "envoy_grpc"
      ? { targetSpecifier: { case: "envoyGrpc", value: { clusterName: SDS_CLUSTER_NAME } } }
      : {
          targetSpecifier: {
            case: "googleGrpc",
            value: {
              targetUri: `unix:${opts.sdsSocketPath}`,
              statPrefix: "sdsstat",
              channelCredentials: { credentialSpecifier: { case: "localCredentials", value: {} } },
              callCredentials: [
                {
                  credentialSpecifier: {
                    case: "fromPlugin",
                    value: {
                      name: FILE_BASED_METADATA,
                      configType: {
                        case: "typedConfig",
                        value: anyPack(
                          FileBasedMetadataConfigSchema,
                          create(FileBasedMetadataConfigSchema, {
                            secretData: { specifier: { case: "filename", value: opts.tokenPath } },
                            headerKey: SDS_TOKEN_HEADER,
                          }),
                        ),
                      },
                    },
                  },
                },
              ],
              credentialsFactoryName: FILE_BASED_METADATA,
            },
          },
        };
  return create(ConfigSourceSchema, {
    configSourceSpecifier: {
      case: "apiConfigSource",
      value: {
        apiType: ApiConfigSource_ApiType.GRPC,
        transportApiVersion: ApiVersion.V3,
        grpcServices: [grpcService],
      },
    },
    resourceApiVersion: ApiVersion.V3,
  });
}

/** An SdsSecretConfig for the node agent's SDS config source. */
export function sdsSecret(name: string, opts: TranslateOptions): SdsSecretConfig {
  const secret = create(SdsSecretConfigSchema, { name });
  secret.sdsConfig = sdsConfigSource(opts);
  return secret;
}
