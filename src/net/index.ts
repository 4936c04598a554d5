// Shared HTTP/2 gRPC server plumbing used by the CA, SDS and xDS servers.
export {
  startGrpcServer,
  peerCertificateOf,
  DEFAULT_MAX_MESSAGE_BYTES,
  type GrpcServerOptions,
  type GrpcServerTls,
  type ListenAddress,
  type RunningGrpcServer,
  type StartedGrpcServer,
} from "./grpc-server.js";
