// What `meshkey render` writes: per proxy kind and node (one sidecar per service,
// one proxyless gRPC client) the resources the control plane would push, as
// canonical protobuf JSON — through the same cache snapshot as the server.
import type { JsonObject } from "@bufbuild/protobuf";
import { translateForNode, checkConsistency, type MeshModel, type NodeInfo, type TranslateOptions } from "../mesh/index.js";
import { snapshotFromResources, snapshotToJson, sortKeys } from "./resource/resource-snapshot.js";

export interface RenderedNode {
  /** File name: `<kind>-<node>.json`. */
  file: string;
  node: NodeInfo;
  json: string;
}

/** The nodes `render` writes for a mesh: a sidecar per service (pod `<name>-0`), and one proxyless client. */
export function renderNodes(mesh: MeshModel): NodeInfo[] {
  const nodes: NodeInfo[] = mesh.services.map((s) => ({
    id: `sidecar~${s.endpoints[0]?.address ?? "10.0.0.1"}~${s.name}-0.${s.namespace}~${s.namespace}.svc.cluster.local`,
    metadata: { NAMESPACE: s.namespace, SERVICE_ACCOUNT: s.serviceAccount },
  }));
  nodes.push({ id: "proxyless-grpc", metadata: { GENERATOR: "grpc" } });
  return nodes;
}

export function renderMesh(mesh: MeshModel, opts: TranslateOptions): RenderedNode[] {
  return renderNodes(mesh).map((node) => {
    const set = translateForNode(mesh, node, opts);
    const problems = checkConsistency(set);
    if (problems.length > 0) throw new Error(`node ${node.id}: ${problems.join("; ")}`);
    const doc: JsonObject = { node: node as unknown as JsonObject, resources: snapshotToJson(snapshotFromResources(set)) };
    const kind = node.metadata?.["GENERATOR"] === "grpc" ? "proxyless" : "sidecar";
    const name = kind === "proxyless" ? "grpc" : `${node.id.split("~")[2]}`;
    return { file: `${kind}-${name}.json`, node, json: `${JSON.stringify(sortKeys(doc), null, 2)}\n` };
  });
}
