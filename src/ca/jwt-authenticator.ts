// Service-account JWTs verified with jose: JWKS from a file, a URL, OIDC
// discovery or inline keys; issuer, audience, exp/nbf with leeway, asymmetric
// algorithms only. The identity comes from the Kubernetes claims.
import { readFile } from "node:fs/promises";
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import { AuthenticationError, VerifierUnavailableError } from "./errors.js";
import { invalidIdentityReason, type AuthenticatedCaller, type WorkloadIdentity } from "./identity.js";

export interface TokenAuthenticator {
  /**
   * Throws AuthenticationError when the token is not valid, and VerifierUnavailableError when
   * it cannot be checked now (the verifier is down): only the first means a bad token.
   */
  authenticate(token: string): Promise<AuthenticatedCaller>;
  /** True once the verifier can check tokens (its keys are loaded); absent: always ready. */
  ready?(): boolean;
  /** Loads what the verifier needs (the JWKS) ahead of the first token; failures are reported, not thrown. */
  warmUp?(): Promise<void>;
  /** What a token must match, for the log of a refused token (no key material). */
  expects?(): TokenExpectations;
}

/** What a verifier requires of a token: the issuer, the audience and where the keys come from. */
export interface TokenExpectations {
  issuer?: string;
  audience: string | string[];
  /** The JWKS the signing key is looked up in ("file PATH", "url URL", "oidc discovery of ISS: URL", "inline (N keys)"), or the TokenReview URL. */
  keys: string;
}

/**
 * The claims a token says it carries, read WITHOUT verifying it: who presented a refused
 * token (sub, iss, aud, exp, kid), for the log. Never trust these for a decision.
 */
export function unverifiedClaims(token: string): Record<string, unknown> | undefined {
  try {
    const header = decodeProtectedHeader(token);
    const c = decodeJwt(token);
    return {
      ...(c.sub !== undefined ? { sub: c.sub } : {}),
      ...(c.iss !== undefined ? { iss: c.iss } : {}),
      ...(c.aud !== undefined ? { aud: c.aud } : {}),
      ...(typeof c.exp === "number" ? { exp: new Date(c.exp * 1000).toISOString() } : {}),
      ...(header.kid !== undefined ? { kid: header.kid } : {}),
    };
  } catch {
    return undefined;
  }
}

export interface JwtAuthenticatorOptions {
  /** Where the keys come from; inline keys may say where they were read (for the log). */
  jwks: { file: string } | { url: string } | { oidcIssuer: string } | { keys: JSONWebKeySet; description?: string };
  /** Required `iss` when set (defaults to oidcIssuer with OIDC discovery). */
  issuer?: string;
  /** Required `aud` (default "istio-ca"). */
  audience?: string;
  /** exp/nbf/iat clock tolerance in seconds (default 60). */
  leewaySeconds?: number;
  /** Allow-list (default: asymmetric only). */
  algorithms?: string[];
  /** The clock, in milliseconds since the epoch (default Date.now): exp, nbf and iat. */
  now?: () => number;
  /** JWKS from a URL or OIDC: background refresh age and the unknown-kid refresh rate limit. */
  remoteKeySet?: Omit<RemoteKeySetOptions, "now">;
}

export const DEFAULT_AUDIENCE = "istio-ca";
export const ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
/** Longest token accepted (projected tokens are ~1 KiB). */
const MAX_TOKEN_BYTES = 16 * 1024;

/**
 * The workload identity in Kubernetes service-account claims; throws AuthenticationError.
 * A `kubernetes.io` claim, when present, must be an object naming the namespace and
 * service account (it is never skipped in favour of `sub`); `sub` alone
 * (system:serviceaccount:<ns>:<sa>) is used only when there is no `kubernetes.io` claim.
 */
export function identityFromClaims(payload: JWTPayload): WorkloadIdentity {
  let fromK8s: WorkloadIdentity | undefined;
  if (payload["kubernetes.io"] !== undefined) {
    const k = payload["kubernetes.io"];
    if (k === null || typeof k !== "object" || Array.isArray(k)) {
      throw new AuthenticationError(`token claim "kubernetes.io" must be an object, got ${k === null ? "null" : Array.isArray(k) ? "an array" : typeof k}`);
    }
    const { namespace: ns, serviceaccount } = k as { namespace?: unknown; serviceaccount?: unknown };
    const sa = serviceaccount !== null && typeof serviceaccount === "object" ? (serviceaccount as { name?: unknown }).name : undefined;
    if (typeof ns !== "string" || typeof sa !== "string") {
      throw new AuthenticationError('token claim "kubernetes.io" lacks namespace or serviceaccount.name');
    }
    fromK8s = { namespace: ns, serviceAccount: sa };
  }
  let fromSub: WorkloadIdentity | undefined;
  if (typeof payload.sub === "string" && payload.sub.startsWith("system:serviceaccount:")) {
    const parts = payload.sub.split(":");
    if (parts.length !== 4) throw new AuthenticationError(`token subject "${payload.sub.slice(0, 200)}" is not system:serviceaccount:<ns>:<sa>`);
    fromSub = { namespace: parts[2]!, serviceAccount: parts[3]! };
  }
  if (fromK8s && fromSub && (fromK8s.namespace !== fromSub.namespace || fromK8s.serviceAccount !== fromSub.serviceAccount)) {
    throw new AuthenticationError("token claims disagree: kubernetes.io namespace/serviceaccount and sub name different accounts");
  }
  const id = fromK8s ?? fromSub;
  if (!id) {
    throw new AuthenticationError(
      "token has no service-account identity (kubernetes.io.namespace + serviceaccount.name, or sub system:serviceaccount:<ns>:<sa>)",
    );
  }
  const invalid = invalidIdentityReason(id);
  if (invalid) throw new AuthenticationError(`token names an ${invalid}`);
  return id;
}

function checkAlgorithms(algs: string[]): string[] {
  for (const a of algs) {
    if (a === "none" || /^HS/i.test(a)) throw new Error(`JWT algorithm "${a}" is not allowed (asymmetric algorithms only)`);
    if (!ASYMMETRIC_ALGORITHMS.includes(a) && a !== "ES512") throw new Error(`unknown JWT algorithm "${a}"`);
  }
  if (algs.length === 0) throw new Error("the JWT algorithm allow-list is empty");
  return algs;
}

/** A key getter over a JWKS file, re-read (at most every 10 s) when a token's key is not in it. */
function fileKeySet(file: string): JWTVerifyGetKey {
  let current: { getKey: JWTVerifyGetKey; loadedAt: number } | undefined;
  const load = async () => {
    let jwks: JSONWebKeySet;
    try {
      jwks = JSON.parse(await readFile(file, "utf8")) as JSONWebKeySet;
    } catch (err) {
      throw new VerifierUnavailableError(
        `JWKS file ${file} cannot be read: ${(err as Error).message}`,
        "the token verifier's key set cannot be read",
        { cause: err },
      );
    }
    current = { getKey: createLocalJWKSet(jwks), loadedAt: Date.now() };
    return current;
  };
  return async (header, token) => {
    const set = current ?? (await load());
    try {
      return await set.getKey(header, token);
    } catch (err) {
      if (Date.now() - set.loadedAt < 10_000) throw err;
      return (await load()).getKey(header, token);
    }
  };
}

const FETCH_TIMEOUT_MS = 5_000;
const MAX_JWKS_BYTES = 1024 * 1024;

/** GETs a JSON document; anything but a 2xx JSON answer is the verifier being unavailable. */
async function fetchJson(url: string, what: string, timeoutMs = FETCH_TIMEOUT_MS): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "error" });
  } catch (err) {
    const why = (err as Error).name === "TimeoutError" ? `timed out after ${timeoutMs} ms` : describeFetchError(err);
    throw new VerifierUnavailableError(`${what} ${url}: ${why}`, `${what} unreachable`, { cause: err });
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new VerifierUnavailableError(`${what} ${url}: HTTP ${res.status}`, `${what} answered HTTP ${res.status}`);
  }
  const text = await res.text();
  if (text.length > MAX_JWKS_BYTES) throw new VerifierUnavailableError(`${what} ${url}: answer too large`, `${what} answer too large`);
  try {
    return JSON.parse(text);
  } catch {
    throw new VerifierUnavailableError(`${what} ${url}: answer is not JSON`, `${what} answered something that is not JSON`);
  }
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

async function discover(issuer: string, timeoutMs: number | undefined): Promise<string> {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  const doc = (await fetchJson(url, "OIDC discovery", timeoutMs)) as { jwks_uri?: unknown } | null;
  if (!doc || typeof doc.jwks_uri !== "string") {
    throw new VerifierUnavailableError(`OIDC discovery ${url}: no jwks_uri`, "OIDC discovery document has no jwks_uri");
  }
  return new URL(doc.jwks_uri).toString();
}

export interface RemoteKeySetOptions {
  /** Keys older than this are refreshed in the background; the last good set stays in use (default 10 min). */
  refreshMs?: number;
  /** At most one fetch for a token whose key is unknown per this long (default 5 s). */
  unknownKidCooldownMs?: number;
  /** Deadline of one fetch (default 5 s). */
  timeoutMs?: number;
  now?: () => number;
}

interface RemoteKeySet {
  getKey: JWTVerifyGetKey;
  loaded(): boolean;
  load(): Promise<void>;
}

/**
 * A JWKS fetched from a URL (resolved lazily, e.g. by OIDC discovery): fetched at start,
 * refreshed in the background when old, and at once (rate-limited) for a token whose `kid` is not
 * in it. A failed fetch keeps the last good keys, so an outage of the JWKS URL only matters for a
 * key the verifier has never seen; then the failure is a VerifierUnavailableError, never a bad token.
 */
function remoteKeySet(locate: () => Promise<string>, options: RemoteKeySetOptions = {}): RemoteKeySet {
  const refreshMs = options.refreshMs ?? 600_000;
  const cooldownMs = options.unknownKidCooldownMs ?? 5_000;
  const now = options.now ?? Date.now;
  let current: { getKey: JWTVerifyGetKey; fetchedAt: number } | undefined;
  let lastAttempt = -Infinity;
  let lastError: VerifierUnavailableError | undefined;
  let inflight: Promise<void> | undefined;
  const reload = (): Promise<void> => {
    inflight ??= (async () => {
      lastAttempt = now();
      try {
        const url = await locate();
        const doc = (await fetchJson(url, "JWKS", options.timeoutMs)) as JSONWebKeySet | null;
        if (!doc || !Array.isArray(doc.keys)) throw new VerifierUnavailableError(`JWKS ${url}: no "keys" array`, "JWKS has no keys array");
        current = { getKey: createLocalJWKSet(doc), fetchedAt: now() };
        lastError = undefined;
      } catch (err) {
        lastError = err instanceof VerifierUnavailableError ? err : new VerifierUnavailableError(
          `JWKS fetch failed: ${(err as Error).message}`, "JWKS unreachable", { cause: err });
        throw lastError;
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };
  return {
    loaded: () => current !== undefined,
    load: () => reload(),
    async getKey(header, token) {
      if (!current) {
        // Not loaded yet: one attempt per cooldown, the others get the last failure.
        if (inflight) await inflight;
        else if (now() - lastAttempt >= cooldownMs || !lastError) await reload();
        else throw lastError;
      } else if (now() - current.fetchedAt >= refreshMs && !inflight && now() - lastAttempt >= cooldownMs) {
        reload().catch(() => undefined); // background refresh; the last good keys stay in use
      }
      const set = current!;
      try {
        return await set.getKey(header, token);
      } catch (err) {
        if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
        if (inflight) await inflight.catch(() => undefined);
        else if (now() - lastAttempt >= cooldownMs) {
          try {
            await reload();
          } catch (fetchErr) {
            throw new VerifierUnavailableError(
              `the token's key is not in the cached JWKS and refreshing it failed: ${(fetchErr as Error).message}`,
              "the token's signing key is unknown and the JWKS cannot be refreshed now",
              { cause: fetchErr },
            );
          }
        } else if (lastError) {
          throw new VerifierUnavailableError(
            `the token's key is not in the cached JWKS, which cannot be refreshed now: ${lastError.message}`,
            "the token's signing key is unknown and the JWKS cannot be refreshed now",
            { cause: lastError },
          );
        }
        return current!.getKey(header, token);
      }
    },
  };
}

export function createJwtAuthenticator(options: JwtAuthenticatorOptions): TokenAuthenticator {
  const algorithms = checkAlgorithms(options.algorithms ?? ASYMMETRIC_ALGORITHMS);
  const audience = options.audience ?? DEFAULT_AUDIENCE;
  const leeway = options.leewaySeconds ?? 60;
  const now = options.now ?? Date.now;
  const src = options.jwks;
  let issuer = options.issuer;
  let getKey: JWTVerifyGetKey;
  let remote: RemoteKeySet | undefined;
  let locatedUrl: string | undefined;
  const keysSource = (): string =>
    "keys" in src
      ? `${src.description ?? "inline"} (${src.keys.keys.length} key${src.keys.keys.length === 1 ? "" : "s"})`
      : "file" in src
        ? `file ${src.file}`
        : "url" in src
          ? `url ${src.url}`
          : `oidc discovery of ${src.oidcIssuer}${locatedUrl ? `: ${locatedUrl}` : ""}`;
  if ("keys" in src) getKey = createLocalJWKSet(src.keys);
  else if ("file" in src) getKey = fileKeySet(src.file);
  else {
    let located: string | undefined;
    const locate =
      "url" in src
        ? async () => src.url
        : async () => (locatedUrl = located ??= await discover(src.oidcIssuer, options.remoteKeySet?.timeoutMs));
    if ("oidcIssuer" in src) issuer ??= src.oidcIssuer;
    remote = remoteKeySet(locate, { ...options.remoteKeySet, now });
    getKey = remote.getKey;
  }

  return {
    async authenticate(token: string): Promise<AuthenticatedCaller> {
      if (typeof token !== "string" || token.length === 0) throw new AuthenticationError("no token");
      if (token.length > MAX_TOKEN_BYTES) throw new AuthenticationError("token too large");
      const t = now();
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          algorithms,
          audience,
          ...(issuer !== undefined ? { issuer } : {}),
          clockTolerance: leeway,
          currentDate: new Date(t),
          requiredClaims: ["exp"],
        }));
      } catch (err) {
        if (err instanceof AuthenticationError || err instanceof VerifierUnavailableError) throw err;
        if (err instanceof joseErrors.JWTExpired) {
          const exp = typeof err.payload.exp === "number" ? new Date(err.payload.exp * 1000).toISOString() : "?";
          throw new AuthenticationError(`token expired at ${exp} (beyond the ${leeway} s leeway): write a fresh token`);
        }
        throw new AuthenticationError(`token rejected: ${(err as Error).message}`);
      }
      // jose checks iat only with maxTokenAge: a token "issued" in the future is refused here.
      if (typeof payload.iat === "number" && payload.iat > t / 1000 + leeway) {
        throw new AuthenticationError(
          `token rejected: "iat" claim ${new Date(payload.iat * 1000).toISOString()} is in the future (more than the ${leeway} s leeway)`,
        );
      }
      const id = identityFromClaims(payload);
      return {
        ...id,
        subject: typeof payload.sub === "string" ? payload.sub : `system:serviceaccount:${id.namespace}:${id.serviceAccount}`,
        expiresAt: typeof payload.exp === "number" ? new Date(payload.exp * 1000) : undefined,
      };
    },
    ready: () => remote?.loaded() ?? true,
    expects: () => ({ ...(issuer !== undefined ? { issuer } : {}), audience, keys: keysSource() }),
    async warmUp() {
      if (!remote || remote.loaded()) return;
      const keys = remote;
      // Fetched at start; while that fails, retried in the background (1 s doubling to 30 s), so
      // that readiness turns true once the JWKS URL answers, before any token arrives.
      let delay = 1_000;
      const attempt = async (): Promise<void> => {
        if (keys.loaded()) return;
        try {
          await keys.load();
        } catch {
          setTimeout(() => void attempt(), delay).unref();
          delay = Math.min(delay * 2, 30_000);
        }
      };
      await attempt();
    },
  };
}
