// The CA part's public API: root / plugged-in CA, issuance (inline or on a crypto worker
// pool), token authentication (JWT, TokenReview, dev issuer, the verified-token memo) and
// the CreateCertificate server.
export type { KeyType, WorkloadIdentity, AuthenticatedCaller } from "./identity.js";
export { CONTROL_PLANE_IDENTITY, controlPlaneDnsName } from "./identity.js";
// The SPIFFE ID format is src/spiffe's; re-exported for the `meshkey/ca` package.
export { spiffeIdOf } from "../spiffe/index.js";
export { AuthenticationError, InvalidRequestError, StateDirError, VerifierUnavailableError } from "./errors.js";
export {
  createJwtAuthenticator,
  unverifiedClaims,
  type TokenAuthenticator,
  type TokenExpectations,
  type JwtAuthenticatorOptions,
} from "./jwt-authenticator.js";
export { createTokenReviewAuthenticator, type TokenReviewAuthenticatorOptions } from "./token-review-authenticator.js";
export {
  withVerifiedTokenMemo,
  DEFAULT_VERIFIED_TOKEN_TTL_MS,
  DEFAULT_VERIFIED_TOKEN_MAX_ENTRIES,
  type VerifiedTokenMemoOptions,
} from "./verified-token-memo.js";
export {
  openCertificateAuthority,
  readRootCertPem,
  rootTrustDomainOf,
  ROOT_CERT_FILE,
  ROOT_KEY_FILE,
  type CertificateAuthority,
  type CertificateAuthorityOptions,
} from "./certificate-authority.js";
export { createKeyAndCsr } from "./key-and-csr.js";
export {
  createCryptoPool,
  defaultCryptoWorkers,
  DEFAULT_CRYPTO_POOL_QUEUE,
  CryptoPoolError,
  CryptoPoolBusyError,
  CryptoPoolClosedError,
  CryptoWorkerExitedError,
  type CryptoPool,
  type CryptoPoolOptions,
  type KeyAndCsrPems,
  type PoolSigningKey,
} from "./crypto-pool.js";
export { readCertificateInfo, fingerprintSha256, type CertificateInfo } from "./certificate-info.js";
export { openDevTokenIssuer, DEV_ISSUER, DEV_JWKS_FILE, type DevTokenIssuer } from "./dev-token-issuer.js";
export { startCaServer, bearerToken, type CaServerOptions } from "./ca-server.js";
export {
  createRenewingServerCertificate,
  canIssueServerCertificates,
  type RenewingServerCertificate,
  type RenewingServerCertificateOptions,
} from "./server-certificate.js";
export type { IssuedServerCertificate } from "./certificate-authority.js";
