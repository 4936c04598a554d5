// Workload identities and their SPIFFE IDs.

export type KeyType = "ec-p256" | "rsa-2048";

export interface WorkloadIdentity {
  namespace: string;
  serviceAccount: string;
}

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

/** Kubernetes object names: lowercase RFC 1123 labels/subdomains (no "/" can slip into a SAN). */
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]{0,253}[a-z0-9])?$/;

export function isValidK8sName(s: string): boolean {
  return K8S_NAME.test(s);
}

/** Throws an Error naming the bad part when the trust domain cannot go into a SPIFFE ID. */
export function checkTrustDomain(trustDomain: string): void {
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw new Error(`invalid trust domain "${trustDomain}": use lowercase letters, digits, ".", "-" and "_"`);
  }
}

/** spiffe://<trustDomain>/ns/<ns>/sa/<sa> */
export function spiffeIdOf(trustDomain: string, id: WorkloadIdentity): string {
  return `spiffe://${trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}
