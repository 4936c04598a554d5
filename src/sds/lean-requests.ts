// The SDS service as the server decodes it: the requests without their Node.
//
// Envoy's first request on every SDS stream carries its whole Node, and Envoy 1.40's
// Node lists its 516 extensions: about 61 KB that protobuf-es takes ~1.3 ms of CPU (and
// much garbage) to decode, per stream, more than the rest of a new stream costs in
// connect-node. The SDS server never reads the node (the identity comes from the token).
// So the service here is SecretDiscoveryService with the same methods, paths and
// responses, whose request messages are DiscoveryRequest and DeltaDiscoveryRequest with
// `node` declared as bytes: its contents are skipped, not parsed (~14 µs a request). The
// descriptors are derived from the generated ones at load time, so field numbers, names
// and types are the real ones; toDiscoveryRequest / toDeltaDiscoveryRequest turn a lean
// request into the generated message (node left unset) for the protocol sessions.
import { create, createFileRegistry, type DescMessage, type DescService, type Message } from "@bufbuild/protobuf";
import type { GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import {
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  type DescriptorProto,
  type FieldDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
  file_envoy_service_discovery_v3_discovery,
  type DeltaDiscoveryResponseSchema,
  type DiscoveryResponseSchema,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { SecretDiscoveryService } from "../../gen/envoy/service/secret/v3/sds_pb.js";

/** A request as the lean schema decodes it: every field of the generated message but `node`, undecoded. */
export type LeanRequest<T> = Message & Omit<T, "$typeName" | "$unknown" | "node"> & { node: Uint8Array };

const LEAN_FILE = "meshkey/sds/lean_requests.proto";
const LEAN_NAME: Record<string, string> = {
  [DiscoveryRequestSchema.typeName]: "LeanDiscoveryRequest",
  [DeltaDiscoveryRequestSchema.typeName]: "LeanDeltaDiscoveryRequest",
};

/** The generated message's descriptor with `node` as bytes (and no options, which only annotate). */
function leanMessage(schema: DescMessage, leanPackage: string): DescriptorProto {
  const proto = schema.proto;
  const name = LEAN_NAME[schema.typeName]!;
  // Nested types (the map entry of initial_resource_versions) move with the message.
  const own = `.${schema.typeName}.`;
  const field = (f: FieldDescriptorProto): FieldDescriptorProto =>
    f.name === "node"
      ? { ...f, type: FieldDescriptorProto_Type.BYTES, typeName: "", options: undefined }
      : { ...f, typeName: f.typeName.startsWith(own) ? `.${leanPackage}.${name}.${f.typeName.slice(own.length)}` : f.typeName, options: undefined };
  return { ...proto, name, field: proto.field.map(field), options: undefined };
}

function leanService(): DescService {
  const service = SecretDiscoveryService.proto;
  // The service's own package, so that its methods keep their paths.
  const pkg = SecretDiscoveryService.file.proto.package;
  const file = create(FileDescriptorProtoSchema, {
    name: LEAN_FILE,
    package: pkg,
    syntax: "proto3",
    dependency: [file_envoy_service_discovery_v3_discovery.proto.name],
    messageType: [leanMessage(DiscoveryRequestSchema, pkg), leanMessage(DeltaDiscoveryRequestSchema, pkg)],
    service: [
      {
        ...service,
        options: undefined,
        method: service.method.map((m) => {
          const lean = LEAN_NAME[m.inputType.replace(/^\./, "")];
          return { ...m, options: undefined, inputType: lean ? `.${pkg}.${lean}` : m.inputType };
        }),
      },
    ],
  });
  const registry = createFileRegistry(file, (name) => (name === file_envoy_service_discovery_v3_discovery.proto.name ? file_envoy_service_discovery_v3_discovery : undefined));
  const desc = registry.getService(SecretDiscoveryService.typeName);
  if (!desc) throw new Error(`${SecretDiscoveryService.typeName} missing from the lean SDS descriptors`);
  return desc;
}

/** SecretDiscoveryService with Node-less requests (same type name, methods and responses). */
export const LeanSecretDiscoveryService = leanService() as GenService<{
  deltaSecrets: { methodKind: "bidi_streaming"; input: GenMessage<LeanRequest<DeltaDiscoveryRequest>>; output: typeof DeltaDiscoveryResponseSchema };
  streamSecrets: { methodKind: "bidi_streaming"; input: GenMessage<LeanRequest<DiscoveryRequest>>; output: typeof DiscoveryResponseSchema };
  fetchSecrets: { methodKind: "unary"; input: GenMessage<LeanRequest<DiscoveryRequest>>; output: typeof DiscoveryResponseSchema };
}>;

export function toDiscoveryRequest(lean: LeanRequest<DiscoveryRequest>): DiscoveryRequest {
  return create(DiscoveryRequestSchema, {
    versionInfo: lean.versionInfo,
    resourceNames: lean.resourceNames,
    resourceLocators: lean.resourceLocators,
    typeUrl: lean.typeUrl,
    responseNonce: lean.responseNonce,
    errorDetail: lean.errorDetail,
  });
}

export function toDeltaDiscoveryRequest(lean: LeanRequest<DeltaDiscoveryRequest>): DeltaDiscoveryRequest {
  return create(DeltaDiscoveryRequestSchema, {
    typeUrl: lean.typeUrl,
    resourceNamesSubscribe: lean.resourceNamesSubscribe,
    resourceNamesUnsubscribe: lean.resourceNamesUnsubscribe,
    resourceLocatorsSubscribe: lean.resourceLocatorsSubscribe,
    resourceLocatorsUnsubscribe: lean.resourceLocatorsUnsubscribe,
    initialResourceVersions: lean.initialResourceVersions,
    responseNonce: lean.responseNonce,
    errorDetail: lean.errorDetail,
  });
}
