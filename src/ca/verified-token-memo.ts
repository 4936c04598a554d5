// One verification per issuance, for any verifier: the node agent checks a token when a
// stream opens and the in-process CA checks the same token a few milliseconds later; with
// TokenReview each check is an API-server call. This wrapper remembers a successful
// verification for a short while, keyed by a hash of the exact token text.
import { createHash } from "node:crypto";
import { decodeJwt } from "jose";
import type { AuthenticatedCaller } from "./identity.js";
import type { TokenAuthenticator } from "./jwt-authenticator.js";

export const DEFAULT_VERIFIED_TOKEN_TTL_MS = 10_000;
export const DEFAULT_VERIFIED_TOKEN_MAX_ENTRIES = 1024;
/** Longer tokens go to the verifier every time (which refuses them: projected tokens are ~1 KiB). */
const MAX_REMEMBERED_TOKEN_CHARS = 16 * 1024;

export interface VerifiedTokenMemoOptions {
  /** How long a verification is remembered (default 10 s; 0: never, every call goes to the verifier). */
  ttlMs?: number;
  /** Tokens remembered at most; the oldest goes first (default 1024). */
  maxEntries?: number;
  /** The clock, in milliseconds since the epoch (default Date.now). */
  now?: () => number;
}

interface Remembered {
  caller: AuthenticatedCaller;
  until: number;
}

const copyOf = (c: AuthenticatedCaller): AuthenticatedCaller => ({
  ...c,
  expiresAt: c.expiresAt === undefined ? undefined : new Date(c.expiresAt.getTime()),
});

/**
 * The token's own `exp` in ms, read WITHOUT verifying it, or undefined when it is not a JWT
 * with a numeric exp. Used only to remember a verification for less time, never for more.
 */
function unverifiedExpiryMs(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `authenticator`, remembering each successful verification for at most `ttlMs`, and never
 * past the token's expiry (the verified caller's `expiresAt`, and the token's own `exp` claim
 * when it is a JWT), without any leeway. Failures (AuthenticationError, VerifierUnavailableError,
 * anything thrown) are never remembered: the next call asks the verifier again. Concurrent
 * calls with the same token share one verification. Tokens are kept as SHA-256 hashes only.
 * ready, warmUp and expects are the wrapped authenticator's.
 */
export function withVerifiedTokenMemo(authenticator: TokenAuthenticator, options: VerifiedTokenMemoOptions = {}): TokenAuthenticator {
  const ttlMs = options.ttlMs ?? DEFAULT_VERIFIED_TOKEN_TTL_MS;
  const maxEntries = options.maxEntries ?? DEFAULT_VERIFIED_TOKEN_MAX_ENTRIES;
  const now = options.now ?? Date.now;
  if (!(ttlMs >= 0)) throw new RangeError(`ttlMs must be >= 0, got ${ttlMs}`);
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxEntries must be a whole number >= 1, got ${maxEntries}`);
  if (ttlMs === 0) return authenticator;

  /** Map order is insertion order: the first entry is the oldest. */
  const remembered = new Map<string, Remembered>();
  const inflight = new Map<string, Promise<AuthenticatedCaller>>();

  const verify = (key: string, token: string): Promise<AuthenticatedCaller> => {
    const started = now();
    const p = (async () => {
      try {
        const caller = await authenticator.authenticate(token);
        const until = Math.min(started + ttlMs, caller.expiresAt?.getTime() ?? Infinity, unverifiedExpiryMs(token) ?? Infinity);
        if (until > now()) {
          remembered.delete(key);
          while (remembered.size >= maxEntries) remembered.delete(remembered.keys().next().value!);
          remembered.set(key, { caller: copyOf(caller), until });
        }
        return caller;
      } finally {
        inflight.delete(key);
      }
    })();
    inflight.set(key, p);
    return p;
  };

  return {
    async authenticate(token: string): Promise<AuthenticatedCaller> {
      if (typeof token !== "string" || token.length === 0 || token.length > MAX_REMEMBERED_TOKEN_CHARS) {
        return authenticator.authenticate(token);
      }
      const key = createHash("sha256").update(token).digest("base64");
      const known = remembered.get(key);
      if (known) {
        if (now() < known.until) return copyOf(known.caller);
        remembered.delete(key);
      }
      return copyOf(await (inflight.get(key) ?? verify(key, token)));
    },
    ...(authenticator.ready ? { ready: () => authenticator.ready!() } : {}),
    ...(authenticator.warmUp ? { warmUp: () => authenticator.warmUp!() } : {}),
    ...(authenticator.expects ? { expects: () => authenticator.expects!() } : {}),
  };
}
