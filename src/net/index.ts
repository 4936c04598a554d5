// Shared HTTP/2 gRPC server plumbing used by the CA, SDS and xDS servers.
export {
  startGrpcServer,
  peerCertificateOf,
  DEFAULT_CONNECTION_LIMITS,
  type ConnectionLimits,
  type ConnectionCloseReason,
  type GrpcServerOptions,
  type GrpcServerTls,
  type ListenAddress,
  type RunningGrpcServer,
  type StartedGrpcServer,
} from "./grpc-server.js";
