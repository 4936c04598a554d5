// Certificate facts for the operator verbs (node:crypto's X509Certificate): PEM
// bundles split, a chain verified against roots, the fingerprint in the form
// `openssl x509 -fingerprint -sha256` prints (AB:CD:…, upper case).
import { X509Certificate } from "node:crypto";

export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** Leaf first: each certificate is signed by the next, the last by one of `roots`; all valid at `now`. */
export function checkChain(chain: X509Certificate[], roots: X509Certificate[], now: Date): { ok: true } | { ok: false; reason: string } {
  if (chain.length === 0) return { ok: false, reason: "no certificate" };
  if (roots.length === 0) return { ok: false, reason: "no root in ROOTCA" };
  for (const [i, cert] of chain.entries()) {
    if (new Date(cert.validFrom) > now || new Date(cert.validTo) < now) return { ok: false, reason: `certificate ${i} is not valid now (${cert.validFrom} – ${cert.validTo})` };
    const next = chain[i + 1];
    if (next) {
      if (!cert.checkIssued(next) || !cert.verify(next.publicKey)) return { ok: false, reason: `certificate ${i} is not signed by certificate ${i + 1}` };
      continue;
    }
    if (roots.some((r) => r.fingerprint256 === cert.fingerprint256)) return { ok: true };
    if (roots.some((r) => cert.checkIssued(r) && cert.verify(r.publicKey))) return { ok: true };
    return { ok: false, reason: `certificate ${i} (${cert.issuer.replace(/\n/g, ", ")}) is not signed by a ROOTCA certificate` };
  }
  return { ok: false, reason: "unreachable" };
}

/** URI SANs of a certificate (`spiffe://…`). */
export function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
}
