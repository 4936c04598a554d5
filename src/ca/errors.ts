// Typed errors of the CA part; the gRPC edges map them to status codes.

/** The caller's credential is missing or not valid (edges: UNAUTHENTICATED). */
export class AuthenticationError extends Error {
  override name = "AuthenticationError";
}

/**
 * The token could not be checked because the verifier itself failed: the JWKS URL, OIDC
 * discovery or the TokenReview API server is unreachable, answered 5xx or timed out, or the
 * JWKS file cannot be read. Nothing is known about the token, so it is not a bad token: retry
 * later (edges: UNAVAILABLE, with `publicMessage`; `message` may name server-side paths and
 * addresses and is for logs only).
 */
export class VerifierUnavailableError extends Error {
  override name = "VerifierUnavailableError";
  /** What a client may be told: names no file path and no internal address. */
  readonly publicMessage: string;
  constructor(message: string, publicMessage: string, options?: { cause?: unknown }) {
    super(message, options);
    this.publicMessage = publicMessage;
  }
}

/** The request itself is wrong: bad CSR, TTL above the maximum… (edges: INVALID_ARGUMENT). */
export class InvalidRequestError extends Error {
  override name = "InvalidRequestError";
}

/**
 * The state directory or a file in it cannot be used as it is: too open permissions, a
 * missing or corrupt key, a root of another trust domain. The message names the path and
 * what to do; nothing is minted or replaced to work around it.
 */
export class StateDirError extends Error {
  override name = "StateDirError";
}
