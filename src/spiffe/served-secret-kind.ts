// The SDS wire contract between the node agent, its clients (Envoy, the Node SDS
// client, `meshkey fetch-secret`) and the translator that names secrets in TLS
// contexts: type URL, token headers, socket, and which names are served to whom.
import { spiffeIdOf, trustDomainId, type WorkloadIdentity } from "./spiffe-id.js";

export const SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/** The metadata header that carries the workload's token (Envoy's file-based metadata credentials, Istio's name). */
export const SDS_TOKEN_HEADER = "istio_sds_credentials_header-bin";
/** Istio 1.1's spelling of the same header. */
export const SDS_TOKEN_HEADER_1_1 = "istio_sds_credentail_header-bin";
/** Every header the node agent reads a token from, in the order it looks. */
export const SDS_TOKEN_HEADERS = [SDS_TOKEN_HEADER, SDS_TOKEN_HEADER_1_1] as const;

/** The node agent's Unix socket (Istio's). */
export const DEFAULT_SDS_SOCKET = "/var/run/sds/uds_path";

/** Envoy's default names (Istio) for the workload certificate and the trust bundle. */
export const DEFAULT_SECRET_NAME = "default";
export const ROOT_SECRET_NAME = "ROOTCA";

export type SecretKind = "tlsCertificate" | "validationContext";

/** Whom a secret name is asked for: a workload of a trust domain. */
export interface SecretScope {
  trustDomain?: string;
  /** The calling workload; without it, only the names every workload is served count. */
  caller?: WorkloadIdentity;
}

/**
 * What the SDS server serves under `name`: the caller's own certificate as `default`
 * or as its SPIFFE ID, the trust bundle as `ROOTCA` or as `spiffe://<trust domain>`,
 * and nothing else (undefined). A name that needs the trust domain or the caller
 * is not served when the scope lacks it.
 */
export function servedSecretKind(name: string, scope: SecretScope = {}): SecretKind | undefined {
  const { trustDomain, caller } = scope;
  if (name === DEFAULT_SECRET_NAME) return "tlsCertificate";
  if (name === ROOT_SECRET_NAME) return "validationContext";
  if (trustDomain === undefined) return undefined;
  if (caller !== undefined && name === spiffeIdOf(trustDomain, caller)) return "tlsCertificate";
  if (name === trustDomainId(trustDomain)) return "validationContext";
  return undefined;
}
