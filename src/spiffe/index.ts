// The wire contract several parts must agree on: SPIFFE IDs, and what the SDS node
// agent serves (type URL, token headers, socket, secret names). No dependencies.
export {
  SPIFFE_SCHEME,
  spiffeIdOf,
  parseSpiffeId,
  trustDomainId,
  type SpiffeIdParts,
  type WorkloadIdentity,
} from "./spiffe-id.js";
export {
  SECRET_TYPE_URL,
  SDS_TOKEN_HEADER,
  SDS_TOKEN_HEADER_1_1,
  SDS_TOKEN_HEADERS,
  DEFAULT_SDS_SOCKET,
  DEFAULT_SECRET_NAME,
  ROOT_SECRET_NAME,
  servedSecretKind,
  type SecretKind,
  type SecretScope,
} from "./served-secret-kind.js";
