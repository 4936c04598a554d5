// Minimal facts about a certificate, read with the DER parser (no X.509 library).
import { createHash } from "node:crypto";
import { fromPem } from "./der.js";
import { OID, parseCertificate, readSubjectAltNames } from "./x509.js";

export interface CertificateInfo {
  /** Serial number, lowercase hex without leading zero bytes. */
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
  uriSans: string[];
  /** SHA-256 of the DER as `openssl x509 -fingerprint -sha256` prints it (see fingerprintSha256). */
  fingerprintSha256: string;
}

/** Facts about the first CERTIFICATE of a PEM text (a chain's leaf). */
export function readCertificateInfo(pem: string): CertificateInfo {
  const der = fromPem(pem, "CERTIFICATE");
  const cert = parseCertificate(der);
  const san = cert.extensions.get(OID.subjectAltName);
  return {
    serialHex: cert.serial.toString("hex"),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    uriSans: san ? readSubjectAltNames(san.value).uris : [],
    fingerprintSha256: fingerprintSha256(der),
  };
}

/**
 * The one fingerprint format meshkey prints (banner, `ca init`, /debug/sds, proxy-config,
 * fetch-secret, the status page): SHA-256 of the DER in upper-case hex pairs joined by
 * colons, exactly as `openssl x509 -noout -fingerprint -sha256` prints it after "=".
 * Takes the DER, or a PEM text (its first CERTIFICATE).
 */
export function fingerprintSha256(cert: Uint8Array | string): string {
  const der = typeof cert === "string" ? fromPem(cert, "CERTIFICATE") : cert;
  return createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)!.join(":");
}
