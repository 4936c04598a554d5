// On an mTLS ADS port the node a stream claims to be must be the workload its
// client certificate names: the namespace and service account of the node id and
// metadata (NAMESPACE, SERVICE_ACCOUNT, SPIFFE_ID, TRUST_DOMAIN, as `meshkey
// bootstrap` writes them) must match the peer's SPIFFE ID. Otherwise a workload
// could ask for, and read, another workload's configuration.
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { sidecarIdentity } from "../../mesh/index.js";
import { parseSpiffeId, spiffeIdOf } from "../../spiffe/index.js";
import type { WatchNode } from "../cache/watch.js";

/** From a call's context to the SPIFFE ID its (verified) client certificate carries, if any. */
export type PeerIdentityOf = (ctx: HandlerContext) => string | undefined;

const denied = (message: string) => new ConnectError(message, Code.PermissionDenied);

/**
 * Throws PERMISSION_DENIED, naming both identities, unless the node's claimed
 * identity is the peer certificate's.
 */
export function checkNodeIdentity(node: WatchNode, peerSpiffeId: string | undefined): void {
  if (peerSpiffeId === undefined) throw denied(`node "${node.id}": the connection presented no client certificate with a SPIFFE ID`);
  const peer = parseSpiffeId(peerSpiffeId);
  if (!peer) throw denied(`node "${node.id}": client certificate identity ${peerSpiffeId} is not spiffe://<trust domain>/ns/<ns>/sa/<sa>`);
  const md = node.metadata ?? {};
  const str = (k: string) => (typeof md[k] === "string" && md[k] !== "" ? (md[k] as string) : undefined);
  const claimedSpiffe = str("SPIFFE_ID");
  const fromSpiffe = claimedSpiffe !== undefined ? parseSpiffeId(claimedSpiffe) : undefined;
  const id = sidecarIdentity(node);
  const claimed = {
    trustDomain: str("TRUST_DOMAIN") ?? fromSpiffe?.trustDomain,
    namespace: id.namespace || fromSpiffe?.namespace,
    serviceAccount: id.serviceAccount ?? fromSpiffe?.serviceAccount,
  };
  const shown =
    claimedSpiffe ??
    spiffeIdOf(claimed.trustDomain ?? peer.trustDomain, { namespace: claimed.namespace || "?", serviceAccount: claimed.serviceAccount ?? "*" });
  const mismatch = () => denied(`node "${node.id}" claims identity ${shown} but its client certificate is ${peerSpiffeId}`);
  if (!claimed.namespace) throw denied(`node "${node.id}" claims no namespace (node id or NAMESPACE metadata); its client certificate is ${peerSpiffeId}`);
  if (claimedSpiffe !== undefined && claimedSpiffe !== peerSpiffeId) throw mismatch();
  if (claimed.trustDomain !== undefined && claimed.trustDomain !== peer.trustDomain) throw mismatch();
  if (claimed.namespace !== peer.namespace) throw mismatch();
  if (claimed.serviceAccount !== undefined && claimed.serviceAccount !== peer.serviceAccount) throw mismatch();
}
