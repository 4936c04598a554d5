// Every message type the translator packs into an Any (and the four resource types):
// what toJson / anyUnpack need to read a ResourceSet back.
import { createRegistry } from "@bufbuild/protobuf";
import { ClusterSchema } from "../../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ClusterLoadAssignmentSchema } from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { FileBasedMetadataConfigSchema } from "../../../gen/envoy/config/grpc_credential/v3/file_based_metadata_pb.js";
import { ListenerSchema } from "../../../gen/envoy/config/listener/v3/listener_pb.js";
import { RouteConfigurationSchema } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { RouterSchema } from "../../../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import { TlsInspectorSchema } from "../../../gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.js";
import { HttpConnectionManagerSchema } from "../../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { TcpProxySchema } from "../../../gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.js";
import { HttpProtocolOptionsSchema } from "../../../gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.js";
import { SecretSchema } from "../../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { DownstreamTlsContextSchema, UpstreamTlsContextSchema } from "../../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";

export const resourceTypeRegistry = createRegistry(
  ClusterSchema,
  ClusterLoadAssignmentSchema,
  ListenerSchema,
  RouteConfigurationSchema,
  SecretSchema,
  HttpConnectionManagerSchema,
  RouterSchema,
  TcpProxySchema,
  TlsInspectorSchema,
  UpstreamTlsContextSchema,
  DownstreamTlsContextSchema,
  FileBasedMetadataConfigSchema,
  HttpProtocolOptionsSchema,
);
