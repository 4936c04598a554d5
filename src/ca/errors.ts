// Typed errors of the CA part; the gRPC edges map them to status codes.

/** The caller's credential is missing or not valid (edges: UNAUTHENTICATED). */
export class AuthenticationError extends Error {
  override name = "AuthenticationError";
}

/** The request itself is wrong: bad CSR, TTL above the maximum… (edges: INVALID_ARGUMENT). */
export class InvalidRequestError extends Error {
  override name = "InvalidRequestError";
}
