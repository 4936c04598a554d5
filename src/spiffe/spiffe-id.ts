// SPIFFE IDs of Kubernetes workloads, as Istio writes them:
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.

export const SPIFFE_SCHEME = "spiffe://";

/** A workload as the SPIFFE ID names it. */
export interface WorkloadIdentity {
  namespace: string;
  serviceAccount: string;
}

/** The parts of a workload SPIFFE ID. */
export interface SpiffeIdParts extends WorkloadIdentity {
  trustDomain: string;
}

/** spiffe://<trustDomain>/ns/<ns>/sa/<sa> */
export function spiffeIdOf(trustDomain: string, id: WorkloadIdentity): string {
  return `${SPIFFE_SCHEME}${trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** The name of a trust domain's bundle: spiffe://<trustDomain>. */
export function trustDomainId(trustDomain: string): string {
  return `${SPIFFE_SCHEME}${trustDomain}`;
}

const WORKLOAD_ID = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** The parts of a workload SPIFFE ID, or undefined when `id` is not one. */
export function parseSpiffeId(id: string): SpiffeIdParts | undefined {
  const m = WORKLOAD_ID.exec(id);
  return m ? { trustDomain: m[1]!, namespace: m[2]!, serviceAccount: m[3]! } : undefined;
}
