// A fresh key pair in memory and a PKCS#10 request for it, built by hand
// (node:crypto keygen + one signature), cheap enough for per-workload rotation.
import * as crypto from "node:crypto";
import { promisify } from "node:util";
import { toPem } from "./der.js";
import type { KeyType } from "./identity.js";
import { buildCsr, p256KeyEncodings, signingKeyOf } from "./x509.js";

const generateKeyPair = promisify(crypto.generateKeyPair);

/** A fresh key pair (in memory) and a CSR for it. The CA ignores the CSR's subject and SANs. */
export async function createKeyAndCsr(keyType: KeyType): Promise<{ privateKeyPem: string; csrPem: string }> {
  if (keyType === "ec-p256") {
    const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const { spki, pkcs8 } = p256KeyEncodings(privateKey);
    return {
      privateKeyPem: toPem("PRIVATE KEY", pkcs8),
      csrPem: toPem("CERTIFICATE REQUEST", buildCsr(signingKeyOf(privateKey), spki)),
    };
  }
  let pair: { privateKey: crypto.KeyObject; publicKey: crypto.KeyObject };
  if (keyType === "rsa-2048") pair = await generateKeyPair("rsa", { modulusLength: 2048 });
  else throw new Error(`unknown key type "${String(keyType)}" (use ec-p256 or rsa-2048)`);
  const spki = pair.publicKey.export({ format: "der", type: "spki" });
  const csr = buildCsr(signingKeyOf(pair.privateKey), spki);
  return {
    privateKeyPem: pair.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    csrPem: toPem("CERTIFICATE REQUEST", csr),
  };
}
