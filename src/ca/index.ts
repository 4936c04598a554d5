// The CA part's public API: root / plugged-in CA, issuance, token
// authentication (JWT, TokenReview, dev issuer) and the CreateCertificate server.
export type { KeyType, WorkloadIdentity, AuthenticatedCaller } from "./identity.js";
export { spiffeIdOf, CONTROL_PLANE_IDENTITY, controlPlaneDnsName } from "./identity.js";
export { AuthenticationError, InvalidRequestError, StateDirError, VerifierUnavailableError } from "./errors.js";
export {
  createJwtAuthenticator,
  identityFromClaims,
  ASYMMETRIC_ALGORITHMS,
  DEFAULT_AUDIENCE,
  unverifiedClaims,
  type TokenAuthenticator,
  type TokenExpectations,
  type JwtAuthenticatorOptions,
} from "./jwt-authenticator.js";
export { createTokenReviewAuthenticator, type TokenReviewAuthenticatorOptions } from "./token-review-authenticator.js";
export {
  openCertificateAuthority,
  readRootCertPem,
  rootTrustDomainOf,
  DEFAULT_CERT_TTL_SECONDS,
  DEFAULT_MAX_CERT_TTL_SECONDS,
  ROOT_CERT_FILE,
  ROOT_KEY_FILE,
  type CertificateAuthority,
  type CertificateAuthorityOptions,
} from "./certificate-authority.js";
export { createKeyAndCsr } from "./key-and-csr.js";
export { readCertificateInfo, fingerprintSha256, type CertificateInfo } from "./certificate-info.js";
export { openDevTokenIssuer, DEV_ISSUER, DEV_JWKS_FILE, type DevTokenIssuer } from "./dev-token-issuer.js";
export { startCaServer, caRoutes, bearerToken, CA_SERVER_DNS_NAMES, type CaServerOptions } from "./ca-server.js";
export {
  createRenewingServerCertificate,
  canIssueServerCertificates,
  SERVER_CERT_TTL_SECONDS,
  type RenewingServerCertificate,
  type RenewingServerCertificateOptions,
} from "./server-certificate.js";
export type { IssuedServerCertificate } from "./certificate-authority.js";
