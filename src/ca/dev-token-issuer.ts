// A development token issuer: an ES256 key in the state directory that signs
// tokens shaped like Kubernetes projected service-account tokens. Its public
// JWKS is also written to <stateDir>/jwks.json for remote agents.
import * as crypto from "node:crypto";
import { join } from "node:path";
import { SignJWT, exportJWK, calculateJwkThumbprint, type JSONWebKeySet } from "jose";
import { DEFAULT_AUDIENCE } from "./jwt-authenticator.js";
import { invalidIdentityReason } from "./identity.js";
import { StateDirError } from "./errors.js";
import { createExclusive, ensureStateDir, readIfExists, readPrivateKeyIfExists, writeAtomic } from "./state-files.js";

export const DEV_ISSUER = "https://meshkey.dev-issuer.local";
export const DEV_ISSUER_KEY_FILE = "dev-issuer-key.pem";
export const DEV_JWKS_FILE = "jwks.json";

export interface DevTokenIssuer {
  /** `iss` of the tokens it mints. */
  readonly issuer: string;
  /** Public keys to verify them. */
  readonly jwks: JSONWebKeySet;
  mint(claims: { namespace: string; serviceAccount: string; ttlSeconds?: number; audience?: string | string[] }): Promise<string>;
}

/**
 * Loads (or creates, mode 0600) the dev issuer's signing key in stateDir. A missing key
 * is created only for a new issuer: when jwks.json exists, tokens have been issued
 * already and a new key would silently invalidate them all, so that is a StateDirError.
 */
export async function openDevTokenIssuer(stateDir: string): Promise<DevTokenIssuer> {
  await ensureStateDir(stateDir);
  const keyPath = join(stateDir, DEV_ISSUER_KEY_FILE);
  const jwksPath = join(stateDir, DEV_JWKS_FILE);
  let pem = await readPrivateKeyIfExists(keyPath);
  // jwks.json is written after the key, so a second look at the key tells a lost key from a
  // concurrent first start that created both between our two reads.
  if (pem === undefined && (await readIfExists(jwksPath)) !== undefined) pem = await readPrivateKeyIfExists(keyPath);
  if (pem === undefined) {
    if ((await readIfExists(jwksPath)) !== undefined) {
      throw new StateDirError(
        `the dev issuer key ${keyPath} is missing but ${jwksPath} exists: a new key would invalidate every token already issued; ` +
          `restore the key, or delete ${jwksPath} to start a new issuer (and mint new tokens)`,
      );
    }
    const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    await createExclusive(keyPath, privateKey.export({ format: "pem", type: "pkcs8" }).toString());
    pem = (await readPrivateKeyIfExists(keyPath))!;
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(pem);
  } catch (err) {
    throw new StateDirError(`${keyPath}: cannot read the dev issuer key: ${(err as Error).message}`);
  }
  const publicJwk = await exportJWK(crypto.createPublicKey(privateKey));
  const kid = await calculateJwkThumbprint(publicJwk);
  const jwks: JSONWebKeySet = { keys: [{ ...publicJwk, kid, alg: "ES256", use: "sig" }] };
  const jwksText = `${JSON.stringify(jwks, null, 2)}\n`;
  if ((await readIfExists(jwksPath)) !== jwksText) await writeAtomic(jwksPath, jwksText, 0o644);
  const uidSeed = kid;

  return {
    issuer: DEV_ISSUER,
    jwks,
    async mint({ namespace, serviceAccount, ttlSeconds = 3600, audience = DEFAULT_AUDIENCE }) {
      const invalid = invalidIdentityReason({ namespace, serviceAccount });
      if (invalid) throw new Error(invalid);
      if (!(ttlSeconds > 0)) throw new Error(`token TTL must be positive (got ${ttlSeconds}s)`);
      const now = Math.floor(Date.now() / 1000);
      const h = crypto.createHash("sha256").update(`${uidSeed}/${namespace}/${serviceAccount}`).digest("hex");
      const uid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
      return new SignJWT({
        "kubernetes.io": { namespace, serviceaccount: { name: serviceAccount, uid } },
      })
        .setProtectedHeader({ alg: "ES256", kid, typ: "JWT" })
        .setIssuer(DEV_ISSUER)
        .setSubject(`system:serviceaccount:${namespace}:${serviceAccount}`)
        .setAudience(audience)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + Math.floor(ttlSeconds))
        .sign(privateKey);
    },
  };
}
