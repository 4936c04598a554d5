// Node SDS client: SPIFFE certificates from the meshkey node agent, rotated live.
export {
  createSdsClient,
  spiffeIdOfPeer,
  SdsClientError,
  type SdsClient,
  type SdsClientOptions,
  type TlsMaterial,
} from "./sds-client.js";
// The SDS wire contract is src/spiffe's; re-exported for the `meshkey/client` package.
export { SDS_TOKEN_HEADER, SDS_TOKEN_HEADER_1_1, SECRET_TYPE_URL } from "../spiffe/index.js";
