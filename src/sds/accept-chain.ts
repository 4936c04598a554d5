// What the node agent checks in a chain the CA returned before a workload gets it.
import { CaProviderError } from "./ca-provider.js";
import type { CertificateInfo } from "./ca-types.js";

export interface AcceptedChain {
  /** The leaf's fields. */
  info: CertificateInfo;
  /** Leaf first, then intermediates and the root, one PEM per line block. */
  chainPem: string;
  /** The chain's last certificate: the trust bundle when none is configured. */
  rootPem: string;
}

/** Accepts a chain (PEMs, leaf first) issued for `spiffeId`, or throws an "invalid" CaProviderError. */
export function acceptChain(
  chain: readonly string[],
  spiffeId: string,
  readCertificateInfo: (pem: string) => CertificateInfo,
): AcceptedChain {
  const pems = chain.map((c) => c.trim()).filter((c) => c.length > 0);
  const leaf = pems[0];
  if (leaf === undefined) throw new CaProviderError("CA returned an empty certificate chain", "invalid");
  let info: CertificateInfo;
  try {
    info = readCertificateInfo(leaf);
  } catch (err) {
    throw new CaProviderError(`CA returned an unreadable certificate: ${(err as Error).message}`, "invalid");
  }
  // Never hand a workload a certificate for another identity, whatever the CA says.
  if (!info.uriSans.includes(spiffeId)) {
    throw new CaProviderError(
      `CA returned a certificate for ${info.uriSans.join(", ") || "no URI SAN"}, expected ${spiffeId}`,
      "invalid",
    );
  }
  return {
    info,
    chainPem: pems.map((p) => `${p}\n`).join(""),
    rootPem: `${pems[pems.length - 1]}\n`,
  };
}
