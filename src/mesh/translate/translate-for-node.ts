import type { MeshModel } from "../model.js";
import { nodeKind, sidecarIdentity, type NodeInfo } from "../sidecar-identity.js";
import { translateProxyless } from "./proxyless.js";
import type { ResourceSet, TranslateOptions } from "./resource-set.js";
import { translateSidecar } from "./sidecar.js";

/** Pure: the resources one node is served for this mesh. */
export function translateForNode(mesh: MeshModel, node: NodeInfo, opts: TranslateOptions): ResourceSet {
  return nodeKind(node) === "proxyless" ? translateProxyless(mesh) : translateSidecar(mesh, sidecarIdentity(node), opts);
}
