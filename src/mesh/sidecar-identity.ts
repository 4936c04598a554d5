// Who is asking: an Envoy sidecar (Istio node id or metadata) or a proxyless gRPC client.
import type { MeshModel, MeshService } from "./model.js";

/** The parts of an xDS Node the translator reads (metadata as JSON, like google.protobuf.Struct). */
export interface NodeInfo {
  id: string;
  cluster?: string;
  metadata?: Record<string, unknown>;
}

/** Node metadata keys naming the sidecar's SDS socket and token file (written by `meshkey bootstrap`). */
export const NODE_METADATA_SDS_SOCKET = "SDS_SOCKET";
export const NODE_METADATA_SDS_TOKEN_PATH = "SDS_TOKEN_PATH";

/**
 * Every node metadata key meshkey reads (translator, node identity) or writes (`meshkey
 * bootstrap`, `render`). Anything else a client sent is not echoed back (see redactNodeMetadata).
 */
export const KNOWN_NODE_METADATA_KEYS: ReadonlySet<string> = new Set([
  "GENERATOR",
  "ROLE",
  "NAMESPACE",
  "SERVICE_ACCOUNT",
  "TRUST_DOMAIN",
  "SPIFFE_ID",
  "INSTANCE_IPS",
  "POD_NAME",
  NODE_METADATA_SDS_SOCKET,
  NODE_METADATA_SDS_TOKEN_PATH,
]);
export const REDACTED_METADATA_VALUE = "[redacted by meshkey]";

/** The node with every metadata value meshkey does not use replaced by REDACTED_METADATA_VALUE (a client may have planted a token there). */
export function redactNodeMetadata(node: NodeInfo): NodeInfo {
  if (!node.metadata) return node;
  const metadata: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node.metadata)) metadata[k] = KNOWN_NODE_METADATA_KEYS.has(k) ? v : REDACTED_METADATA_VALUE;
  return { ...node, metadata };
}

export type NodeKind = "sidecar" | "proxyless";

export interface SidecarIdentity {
  ip: string;
  podName: string;
  namespace: string;
  serviceAccount: string | undefined;
  /**
   * Where this Envoy's SDS agent listens and which token file it sends, from the
   * node metadata `meshkey bootstrap` writes (SDS_SOCKET, SDS_TOKEN_PATH). Several
   * sidecars on one host each read their own token, so the pushed SDS config
   * source must name the node's file, not one server-wide default.
   */
  sdsSocketPath?: string;
  tokenPath?: string;
}

export function nodeKind(node: NodeInfo): NodeKind {
  return node.metadata?.["GENERATOR"] === "grpc" ? "proxyless" : "sidecar";
}

/**
 * Reads Istio's `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`; metadata NAMESPACE,
 * SERVICE_ACCOUNT, INSTANCE_IPS and POD_NAME override or complete it.
 */
export function sidecarIdentity(node: NodeInfo): SidecarIdentity {
  const md = node.metadata ?? {};
  const str = (k: string) => (typeof md[k] === "string" && md[k] !== "" ? (md[k] as string) : undefined);
  const parts = node.id.split("~");
  let ip = "";
  let podName = "";
  let namespace = "";
  if (parts.length === 4) {
    ip = parts[1]!;
    const podDotNs = parts[2]!;
    const dot = podDotNs.lastIndexOf(".");
    podName = dot > 0 ? podDotNs.slice(0, dot) : podDotNs;
    namespace = dot > 0 ? podDotNs.slice(dot + 1) : (parts[3]!.split(".")[0] ?? "");
  }
  ip = str("INSTANCE_IPS")?.split(",")[0] ?? ip;
  const sdsSocketPath = str(NODE_METADATA_SDS_SOCKET);
  const tokenPath = str(NODE_METADATA_SDS_TOKEN_PATH);
  return {
    ip,
    podName: str("POD_NAME") ?? podName,
    namespace: str("NAMESPACE") ?? namespace,
    serviceAccount: str("SERVICE_ACCOUNT"),
    ...(sdsSocketPath ? { sdsSocketPath } : {}),
    ...(tokenPath ? { tokenPath } : {}),
  };
}

/**
 * The services a sidecar fronts: in its namespace, with its service account when
 * known, and with an endpoint on its IP or a pod name `<service>` / `<service>-…`.
 */
export function workloadServices(mesh: MeshModel, id: SidecarIdentity): MeshService[] {
  const candidates = mesh.services.filter(
    (s) => s.namespace === id.namespace && (id.serviceAccount === undefined || s.serviceAccount === id.serviceAccount),
  );
  const byIp = candidates.filter((s) => id.ip !== "" && s.endpoints.some((e) => e.address === id.ip));
  if (byIp.length > 0) return byIp;
  const byPod = candidates.filter((s) => id.podName === s.name || id.podName.startsWith(`${s.name}-`));
  if (byPod.length > 0) return byPod;
  return id.serviceAccount !== undefined ? candidates : [];
}
