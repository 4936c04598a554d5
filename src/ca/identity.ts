// Workload identities: which names can go into a SPIFFE ID (its format is src/spiffe's).
import type { WorkloadIdentity } from "../spiffe/index.js";

export type { WorkloadIdentity };
export type KeyType = "ec-p256" | "rsa-2048";

/**
 * The control plane's own workload identity: the SAN of meshkey's mTLS ADS server
 * certificate, what sidecars check it against, and what a pilot-role Envoy runs as.
 */
export const CONTROL_PLANE_IDENTITY: WorkloadIdentity = { namespace: "istio-system", serviceAccount: "istiod" };
/** DNS name of the control plane's certificate and the sidecars' TLS SNI (`istiod.<ns>.svc`). */
export const controlPlaneDnsName = (namespace: string) => `istiod.${namespace}.svc`;

/** What a verified credential says. */
export interface AuthenticatedCaller extends WorkloadIdentity {
  subject: string;
  expiresAt: Date | undefined;
}

// Kubernetes names (apimachinery's IsDNS1123Label / IsDNS1123Subdomain): lowercase, so
// no "/" or ":" can slip into a SPIFFE ID. A namespace is a DNS label (<= 63, no dots);
// a service account is a DNS subdomain (<= 253, dot-separated labels).
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]{0,253}[a-z0-9])?$/;

/** A Kubernetes namespace name: an RFC 1123 DNS label of at most 63 characters. */
export function isValidNamespace(s: unknown): s is string {
  return typeof s === "string" && s.length <= 63 && DNS_LABEL.test(s);
}

/** A Kubernetes service-account name: an RFC 1123 DNS subdomain of at most 253 characters. */
export function isValidServiceAccount(s: unknown): s is string {
  return typeof s === "string" && s.length <= 253 && DNS_SUBDOMAIN.test(s);
}

/** Why `id` cannot name a workload (namespace first), or undefined when it can. */
export function invalidIdentityReason(id: WorkloadIdentity): string | undefined {
  if (!isValidNamespace(id.namespace)) {
    return `invalid namespace "${String(id.namespace).slice(0, 80)}": a namespace is a DNS label (lowercase letters, digits and "-", at most 63 characters, no dots)`;
  }
  if (!isValidServiceAccount(id.serviceAccount)) {
    return `invalid service account "${String(id.serviceAccount).slice(0, 80)}": a service account is a DNS subdomain (dot-separated lowercase labels, at most 253 characters)`;
  }
  return undefined;
}

/** Throws an Error naming the bad part when the trust domain cannot go into a SPIFFE ID. */
export function checkTrustDomain(trustDomain: string): void {
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw new Error(`invalid trust domain "${trustDomain}": use lowercase letters, digits, ".", "-" and "_"`);
  }
}
