// StreamSecrets as a @grpc/grpc-js generic service definition (no proto loader): protobuf-es
// encodes and decodes the messages. Both the bench's grpc-js client and its grpc-js floor use it.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from "../../gen/envoy/service/discovery/v3/discovery_pb.js";

export const STREAM_SECRETS_PATH = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets";

export const streamSecretsDefinition = {
  streamSecrets: {
    path: STREAM_SECRETS_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: (m: DiscoveryRequest) => Buffer.from(toBinary(DiscoveryRequestSchema, m)),
    requestDeserialize: (b: Buffer) => fromBinary(DiscoveryRequestSchema, b),
    responseSerialize: (m: DiscoveryResponse) => Buffer.from(toBinary(DiscoveryResponseSchema, m)),
    responseDeserialize: (b: Buffer) => fromBinary(DiscoveryResponseSchema, b),
  },
} satisfies grpc.ServiceDefinition;
