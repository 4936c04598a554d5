// The secret cache's metrics: counters fed from its events, gauges read from its
// identities when the registry is collected.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { SecretCacheEvents } from "./secret-cache-events.js";

/** Series of meshkey_sds_identity_cert_expiry_seconds: the identities closest to expiry. */
export const MAX_EXPIRY_SERIES = 50;

/** What the gauges read of one identity: the certificate it serves, if any. */
export interface IdentityView {
  readonly spiffeId: string;
  readonly cert: { readonly info: { readonly notAfter: Date } } | undefined;
}

export interface SecretCacheMetricsOptions {
  registry: Registry;
  now: () => number;
  /** The identities held, read at each collection. */
  identities: ReadonlyMap<string, IdentityView>;
}

export function createSecretCacheMetrics({ registry, now, identities }: SecretCacheMetricsOptions): SecretCacheEvents {
  const csrTotal = new Counter({
    name: "meshkey_sds_csr_total",
    help: "Certificate signing requests sent to the CA, by result",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  for (const result of ["success", "unavailable", "unauthenticated", "invalid"]) csrTotal.inc({ result }, 0);
  const csrSeconds = new Histogram({
    name: "meshkey_sds_csr_duration_seconds",
    help: "Time to generate a key and get its certificate signed",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: "meshkey_sds_identities",
    help: "Workload identities held in the secret cache",
    registers: [registry],
    collect() {
      this.set(identities.size);
    },
  });
  const renewalFailures = new Counter({
    name: "meshkey_sds_renewal_failures_total",
    help: "Renewals of a cached workload certificate that failed, by reason (unavailable, unauthenticated, invalid, token_expired)",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  for (const reason of ["unavailable", "unauthenticated", "invalid", "token_expired"]) renewalFailures.inc({ reason }, 0);
  new Gauge({
    name: "meshkey_sds_identity_cert_expiry_seconds",
    help: `Seconds until each identity's served certificate expires (the ${MAX_EXPIRY_SERIES} soonest to expire)`,
    labelNames: ["spiffe_id"] as const,
    registers: [registry],
    collect() {
      // Bounded: one series per identity would grow with every workload the node ever saw.
      this.reset();
      const soonest = [...identities.values()]
        .flatMap((i) => (i.cert ? [{ spiffeId: i.spiffeId, notAfter: i.cert.info.notAfter.getTime() }] : []))
        .sort((a, b) => a.notAfter - b.notAfter)
        .slice(0, MAX_EXPIRY_SERIES);
      for (const i of soonest) this.set({ spiffe_id: i.spiffeId }, (i.notAfter - now()) / 1000);
    },
  });
  new Gauge({
    name: "meshkey_sds_cert_expiry_seconds",
    help: "Seconds until the earliest cached workload certificate expires",
    registers: [registry],
    collect() {
      let earliest = Infinity;
      for (const i of identities.values()) if (i.cert) earliest = Math.min(earliest, i.cert.info.notAfter.getTime());
      if (Number.isFinite(earliest)) this.set((earliest - now()) / 1000);
      else {
        // No certificate: no sample at all (an unlabelled gauge would otherwise read 0, "expired").
        this.reset();
        this.remove({});
      }
    },
  });

  return {
    issued({ seconds }) {
      csrTotal.inc({ result: "success" });
      csrSeconds.observe(seconds);
    },
    failed({ kind, renewal }) {
      csrTotal.inc({ result: kind });
      if (renewal) renewalFailures.inc({ reason: kind });
    },
    tokenExpired() {
      renewalFailures.inc({ reason: "token_expired" });
    },
  };
}
