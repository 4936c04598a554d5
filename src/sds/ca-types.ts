// The names of the CA part that the node agent uses, in one place (imported only
// from src/ca/index.ts).
export {
  spiffeIdOf,
  unverifiedClaims,
  AuthenticationError,
  VerifierUnavailableError,
  InvalidRequestError,
  type KeyType,
  type WorkloadIdentity,
  type AuthenticatedCaller,
  type TokenAuthenticator,
  type CertificateAuthority,
  type CertificateInfo,
} from "../ca/index.js";

export interface KeyAndCsr {
  privateKeyPem: string;
  csrPem: string;
}
