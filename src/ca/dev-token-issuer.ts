// A development token issuer: an ES256 key in the state directory that signs
// tokens shaped like Kubernetes projected service-account tokens. Its public
// JWKS is also written to <stateDir>/jwks.json for remote agents.
import * as crypto from "node:crypto";
import { join } from "node:path";
import { SignJWT, exportJWK, calculateJwkThumbprint, type JSONWebKeySet } from "jose";
import { DEFAULT_AUDIENCE } from "./jwt-authenticator.js";
import { isValidK8sName } from "./identity.js";
import { createExclusive, ensureStateDir, readIfExists, writeAtomic } from "./state-files.js";

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

/** Loads (or creates, mode 0600) the dev issuer's signing key in stateDir. */
export async function openDevTokenIssuer(stateDir: string): Promise<DevTokenIssuer> {
  await ensureStateDir(stateDir);
  const keyPath = join(stateDir, DEV_ISSUER_KEY_FILE);
  let pem = await readIfExists(keyPath);
  if (pem === undefined) {
    const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    await createExclusive(keyPath, privateKey.export({ format: "pem", type: "pkcs8" }).toString());
    pem = (await readIfExists(keyPath))!;
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${keyPath}: cannot read the dev issuer key: ${(err as Error).message}`);
  }
  const publicJwk = await exportJWK(crypto.createPublicKey(privateKey));
  const kid = await calculateJwkThumbprint(publicJwk);
  const jwks: JSONWebKeySet = { keys: [{ ...publicJwk, kid, alg: "ES256", use: "sig" }] };
  const jwksText = `${JSON.stringify(jwks, null, 2)}\n`;
  if ((await readIfExists(join(stateDir, DEV_JWKS_FILE))) !== jwksText) {
    await writeAtomic(join(stateDir, DEV_JWKS_FILE), jwksText, 0o644);
  }
  const uidSeed = kid;

  return {
    issuer: DEV_ISSUER,
    jwks,
    async mint({ namespace, serviceAccount, ttlSeconds = 3600, audience = DEFAULT_AUDIENCE }) {
      if (!isValidK8sName(namespace)) throw new Error(`invalid namespace "${namespace}"`);
      if (!isValidK8sName(serviceAccount)) throw new Error(`invalid service account "${serviceAccount}"`);
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
