// Authentication of one SDS call: the token from its headers, verified by the
// TokenAuthenticator; a refusal is logged (who was refused, what was expected),
// counted, and thrown as the ConnectError the call ends with:
//   no token, invalid token        → UNAUTHENTICATED
//   the verifier cannot be reached → UNAVAILABLE (Envoy retries)
//   anything else                  → INTERNAL (the message names no detail)
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { SDS_TOKEN_HEADER } from "../spiffe/index.js";
import { AuthenticationError, VerifierUnavailableError, unverifiedClaims, type AuthenticatedCaller, type TokenAuthenticator } from "./ca-types.js";
import type { SdsMetrics } from "./sds-metrics.js";
import { extractWorkloadToken } from "./workload-token.js";

export interface StreamAuthenticatorOptions {
  authenticator: TokenAuthenticator;
  log: Logger;
  metrics: Pick<SdsMetrics, "authFailures">;
}

export interface StreamAuthenticator {
  /** The verified caller of a call and its token; throws the ConnectError the call is refused with. */
  authenticate(headers: Headers, rpc: string): Promise<{ caller: AuthenticatedCaller; token: string }>;
  /** Calls refused so far (for /debug/sds). */
  readonly failures: number;
}

export function createStreamAuthenticator(options: StreamAuthenticatorOptions): StreamAuthenticator {
  const { authenticator, log } = options;
  const { authFailures } = options.metrics;
  let failures = 0;

  /**
   * Who was refused and what was expected, for the log. The caller is named by the claims its
   * token says it carries (unverified). Its uid/pid on the socket would name it better, but Node
   * exposes no SO_PEERCRED; the node id comes in the first request, which a refused stream never reads.
   */
  const refusal = (token: string | undefined) => ({
    peer: "unix socket (uid/pid unknown: Node exposes no SO_PEERCRED)",
    ...(token !== undefined ? { presented: unverifiedClaims(token) ?? "(not a JWT)" } : {}),
    ...(authenticator.expects ? { expected: authenticator.expects() } : {}),
  });

  return {
    get failures() {
      return failures;
    },
    async authenticate(headers, rpc) {
      const token = extractWorkloadToken(headers);
      if (token === undefined) {
        authFailures.inc({ reason: "missing" });
        failures++;
        log.warn({ rpc, ...refusal(undefined) }, "SDS call without a token");
        throw new ConnectError(
          `missing workload token: send it in ${SDS_TOKEN_HEADER} or authorization: Bearer`,
          Code.Unauthenticated,
        );
      }
      try {
        return { caller: await authenticator.authenticate(token), token };
      } catch (err) {
        failures++;
        if (err instanceof AuthenticationError) {
          authFailures.inc({ reason: "invalid" });
          log.warn({ rpc, err: err.message, ...refusal(token) }, "SDS call with an invalid token");
          throw new ConnectError(`invalid workload token: ${err.message}`, Code.Unauthenticated);
        }
        authFailures.inc({ reason: "error" });
        if (err instanceof VerifierUnavailableError) {
          log.warn({ rpc, err: err.message }, "token verifier unavailable: the stream is answered UNAVAILABLE");
          throw new ConnectError(`token verifier unavailable, retry later: ${err.publicMessage}`, Code.Unavailable);
        }
        log.error({ rpc, err: (err as Error).message }, "token verification failed");
        throw new ConnectError("token verification failed inside the node agent", Code.Internal);
      }
    },
  };
}
