// The CA part's types and errors that the node agent's files share, re-exported
// from src/ca/index.ts (never from its inner files), and KeyAndCsr, the shape of a
// generated key and CSR. secret-cache.ts imports the CA's key and certificate
// functions (createKeyAndCsr, readCertificateInfo, ...) from src/ca/index.ts itself.
export {
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
