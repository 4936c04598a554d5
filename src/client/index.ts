// Node SDS client: SPIFFE certificates from the meshkey node agent, rotated live.
export {
  createSdsClient,
  spiffeIdOfPeer,
  SdsClientError,
  SDS_TOKEN_HEADER,
  SECRET_TYPE_URL,
  type SdsClient,
  type SdsClientOptions,
  type TlsMaterial,
} from "./sds-client.js";
