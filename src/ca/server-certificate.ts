// A TLS server certificate that meshkey's own CA issues to one of meshkey's
// endpoints (the CA server, the mTLS ADS server) and renews at half its life for
// as long as the process runs, handing every new one to the server.
import type { Logger } from "pino";
import type { CertificateAuthority, IssuedServerCertificate } from "./certificate-authority.js";
import type { SubjectAltNames } from "./x509.js";

/** Lifetime of meshkey's own TLS server certificates; they are renewed at half-life. */
export const SERVER_CERT_TTL_SECONDS = 30 * 24 * 3600;

export interface RenewingServerCertificateOptions {
  /** Must have issueServerCertificate (the in-process CA, openCertificateAuthority): it issues the certificate. */
  ca: CertificateAuthority;
  sans: SubjectAltNames;
  /** Default SERVER_CERT_TTL_SECONDS. */
  ttlSeconds?: number;
  /** Called with each renewed certificate (not the first one). */
  onRenew: (cert: IssuedServerCertificate) => void;
  /** What the certificate is for, in log lines ("CA server", "ADS mTLS server"). */
  name: string;
  logger?: Logger;
}

export interface RenewingServerCertificate {
  /** The certificate in use now. */
  readonly current: IssuedServerCertificate;
  /** Stops renewing. */
  stop(): void;
}

/** True when `ca` can issue meshkey's own server certificates (the in-process CA). */
export function canIssueServerCertificates(ca: CertificateAuthority | undefined): boolean {
  return typeof ca?.issueServerCertificate === "function";
}

/** Issues the first certificate now and renews it at half-life (the timer does not keep the process alive). */
export function createRenewingServerCertificate(options: RenewingServerCertificateOptions): RenewingServerCertificate {
  const ca = options.ca;
  if (!ca.issueServerCertificate) {
    throw new Error(`the ${options.name} needs a CA opened with openCertificateAuthority (it issues the server's own certificate)`);
  }
  const issue = ca.issueServerCertificate.bind(ca);
  const ttlSeconds = options.ttlSeconds ?? SERVER_CERT_TTL_SECONDS;
  let current = issue(options.sans, ttlSeconds);
  const renewEveryMs = Math.min(2 ** 31 - 1, Math.max(1_000, (ttlSeconds * 1000) / 2));
  const timer = setInterval(() => {
    try {
      current = issue(options.sans, ttlSeconds);
      options.onRenew(current);
      options.logger?.info({ validForSeconds: ttlSeconds }, `${options.name} certificate renewed`);
    } catch (err) {
      options.logger?.error({ err: (err as Error).message }, `cannot renew the ${options.name} certificate; the current one stays`);
    }
  }, renewEveryMs);
  timer.unref();
  return {
    get current() {
      return current;
    },
    stop: () => clearInterval(timer),
  };
}
