// Where the node agent gets its certificates signed. A provider signs one CSR
// with the workload's own token and says, when it fails, whether trying again
// later can help (the secret cache retries with backoff) or not.
import { AuthenticationError, InvalidRequestError, type CertificateAuthority, type TokenAuthenticator } from "./ca-types.js";

export interface CaProvider {
  /** Signs a PEM CSR on behalf of the token's workload. Returns PEMs leaf..root. Throws CaProviderError. */
  sign(csrPem: string, token: string, ttlSeconds?: number): Promise<string[]>;
  /** Where it signs, for logs (e.g. "istio CA 10.0.0.5:15012"); never a secret. */
  readonly endpoint?: string;
  /**
   * A cheap reachability check of the upstream CA (no CSR, no token), bounded by the signal:
   * resolves when the CA answers, rejects otherwise. Absent for the in-process CA.
   */
  probe?(signal: AbortSignal): Promise<void>;
  /** Releases connections (optional). */
  close?(): Promise<void> | void;
}

/**
 * - unavailable: the CA could not be reached or failed transiently (retry with backoff)
 * - unauthenticated: the CA rejected the token (retrying with the same token cannot help)
 * - invalid: the CA rejected the request (bad CSR, TTL above its maximum, ...)
 */
export type CaFailureKind = "unavailable" | "unauthenticated" | "invalid";

export class CaProviderError extends Error {
  override readonly name = "CaProviderError";
  constructor(
    message: string,
    readonly kind: CaFailureKind,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Normalises anything a provider threw into a CaProviderError (unknown failures count as transient). */
export function toCaProviderError(err: unknown): CaProviderError {
  if (err instanceof CaProviderError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CaProviderError(message, "unavailable", { cause: err });
}

export interface BuiltinCaProviderOptions {
  ca: CertificateAuthority;
  /**
   * Who the token names. Give it the same withVerifiedTokenMemo authenticator as the SDS server:
   * the server has just verified the token that opened the stream, so issuance verifies it once.
   */
  authenticator: TokenAuthenticator;
}

/**
 * Signs with the CA in this process; the identity comes from the token, as the CA server does it.
 * A CA whose signing workers are busy or stopped (CryptoPoolError) is "unavailable": retried with backoff.
 */
export function createBuiltinCaProvider(options: BuiltinCaProviderOptions): CaProvider {
  const { ca, authenticator } = options;
  return {
    async sign(csrPem, token, ttlSeconds) {
      let caller;
      try {
        caller = await authenticator.authenticate(token);
      } catch (err) {
        if (err instanceof AuthenticationError) {
          throw new CaProviderError(`CA rejected the token: ${(err as Error).message}`, "unauthenticated", { cause: err });
        }
        throw toCaProviderError(err);
      }
      try {
        return await ca.sign(csrPem, { namespace: caller.namespace, serviceAccount: caller.serviceAccount }, ttlSeconds);
      } catch (err) {
        if (err instanceof InvalidRequestError) {
          throw new CaProviderError(`CA rejected the request: ${(err as Error).message}`, "invalid", { cause: err });
        }
        throw toCaProviderError(err);
      }
    },
  };
}
