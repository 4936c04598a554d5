// Service-account JWTs verified with jose: JWKS from a file, a URL, OIDC
// discovery or inline keys; issuer, audience, exp/nbf with leeway, asymmetric
// algorithms only. The identity comes from the Kubernetes claims.
import { readFile } from "node:fs/promises";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import { AuthenticationError } from "./errors.js";
import { isValidK8sName, type AuthenticatedCaller, type WorkloadIdentity } from "./identity.js";

export interface TokenAuthenticator {
  /** Throws AuthenticationError when the token is not valid. */
  authenticate(token: string): Promise<AuthenticatedCaller>;
}

export interface JwtAuthenticatorOptions {
  jwks: { file: string } | { url: string } | { oidcIssuer: string } | { keys: JSONWebKeySet };
  /** Required `iss` when set (defaults to oidcIssuer with OIDC discovery). */
  issuer?: string;
  /** Required `aud` (default "istio-ca"). */
  audience?: string;
  /** exp/nbf clock tolerance in seconds (default 60). */
  leewaySeconds?: number;
  /** Allow-list (default: asymmetric only). */
  algorithms?: string[];
  /**
   * How long a verified token is remembered, keyed by its exact text (default 10 s; 0: never).
   * The node agent verifies a token when a stream opens and the builtin CA verifies the same
   * token again a few milliseconds later; a remembered token is never accepted after its `exp`
   * (without leeway), and at most 1024 tokens are kept.
   */
  verifiedTokenCacheMs?: number;
}

export const DEFAULT_AUDIENCE = "istio-ca";
export const ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
/** Longest token accepted (projected tokens are ~1 KiB). */
const MAX_TOKEN_BYTES = 16 * 1024;
const VERIFIED_TOKENS_MAX = 1024;

/** The workload identity in Kubernetes service-account claims; throws AuthenticationError. */
export function identityFromClaims(payload: JWTPayload): WorkloadIdentity {
  let fromK8s: WorkloadIdentity | undefined;
  const k = payload["kubernetes.io"] as { namespace?: unknown; serviceaccount?: { name?: unknown } } | undefined;
  if (k && typeof k === "object" && (k.namespace !== undefined || k.serviceaccount !== undefined)) {
    const ns = k.namespace;
    const sa = k.serviceaccount?.name;
    if (typeof ns !== "string" || typeof sa !== "string") {
      throw new AuthenticationError('token claim "kubernetes.io" lacks namespace or serviceaccount.name');
    }
    fromK8s = { namespace: ns, serviceAccount: sa };
  }
  let fromSub: WorkloadIdentity | undefined;
  if (typeof payload.sub === "string" && payload.sub.startsWith("system:serviceaccount:")) {
    const parts = payload.sub.split(":");
    if (parts.length !== 4) throw new AuthenticationError(`token subject "${payload.sub}" is not system:serviceaccount:<ns>:<sa>`);
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
  if (!isValidK8sName(id.namespace) || !isValidK8sName(id.serviceAccount)) {
    throw new AuthenticationError("token names an invalid namespace or service account");
  }
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
      throw new AuthenticationError(`JWKS file ${file} cannot be read: ${(err as Error).message}`);
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

async function discover(issuer: string): Promise<URL> {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new AuthenticationError(`OIDC discovery ${url}: HTTP ${res.status}`);
  const doc = (await res.json()) as { jwks_uri?: unknown };
  if (typeof doc.jwks_uri !== "string") throw new AuthenticationError(`OIDC discovery ${url}: no jwks_uri`);
  return new URL(doc.jwks_uri);
}

export function createJwtAuthenticator(options: JwtAuthenticatorOptions): TokenAuthenticator {
  const algorithms = checkAlgorithms(options.algorithms ?? ASYMMETRIC_ALGORITHMS);
  const audience = options.audience ?? DEFAULT_AUDIENCE;
  const leeway = options.leewaySeconds ?? 60;
  const rememberMs = options.verifiedTokenCacheMs ?? 10_000;
  if (!(rememberMs >= 0)) throw new RangeError(`verifiedTokenCacheMs must be >= 0, got ${rememberMs}`);
  /** Verified tokens (exact text) and until when they may be accepted without verifying again. */
  const verified = new Map<string, { caller: AuthenticatedCaller; until: number }>();
  const src = options.jwks;
  let issuer = options.issuer;
  let getKey: JWTVerifyGetKey | undefined;
  let discovering: Promise<JWTVerifyGetKey> | undefined;
  if ("keys" in src) getKey = createLocalJWKSet(src.keys);
  else if ("file" in src) getKey = fileKeySet(src.file);
  else if ("url" in src) getKey = createRemoteJWKSet(new URL(src.url), { timeoutDuration: 5_000 });
  else issuer ??= src.oidcIssuer;

  const keyGetter = async (): Promise<JWTVerifyGetKey> => {
    if (getKey) return getKey;
    const oidc = (src as { oidcIssuer: string }).oidcIssuer;
    discovering ??= discover(oidc).then(
      (u) => (getKey = createRemoteJWKSet(u, { timeoutDuration: 5_000 })),
      (err) => {
        discovering = undefined;
        throw err;
      },
    );
    return discovering;
  };

  return {
    async authenticate(token: string): Promise<AuthenticatedCaller> {
      if (typeof token !== "string" || token.length === 0) throw new AuthenticationError("no token");
      if (token.length > MAX_TOKEN_BYTES) throw new AuthenticationError("token too large");
      const known = verified.get(token);
      if (known) {
        if (Date.now() < known.until) return { ...known.caller };
        verified.delete(token);
      }
      let payload: JWTPayload;
      try {
        const keys = await keyGetter();
        ({ payload } = await jwtVerify(token, keys, {
          algorithms,
          audience,
          ...(issuer !== undefined ? { issuer } : {}),
          clockTolerance: leeway,
          requiredClaims: ["exp"],
        }));
      } catch (err) {
        if (err instanceof AuthenticationError) throw err;
        throw new AuthenticationError(`token rejected: ${(err as Error).message}`);
      }
      const id = identityFromClaims(payload);
      const caller: AuthenticatedCaller = {
        ...id,
        subject: typeof payload.sub === "string" ? payload.sub : `system:serviceaccount:${id.namespace}:${id.serviceAccount}`,
        expiresAt: typeof payload.exp === "number" ? new Date(payload.exp * 1000) : undefined,
      };
      const until = Math.min(Date.now() + rememberMs, caller.expiresAt?.getTime() ?? 0);
      if (until > Date.now()) {
        if (verified.size >= VERIFIED_TOKENS_MAX) verified.delete(verified.keys().next().value!);
        verified.set(token, { caller, until });
      }
      return { ...caller };
    },
  };
}
