// Mesh registry (YAML file → validated model, watched) and the pure translator
// (model + node → Envoy resources).
export {
  MeshError,
  mtlsModeOf,
  type MeshModel,
  type MeshService,
  type MeshPort,
  type MeshEndpoint,
  type MeshLocality,
  type MeshNamespace,
  type Protocol,
  type MtlsMode,
} from "./model.js";
export { parseMesh, loadMeshFile, readMeshFile, type ReadMeshOptions } from "./parse-mesh.js";
export {
  createMeshParser,
  loadMeshSource,
  type MeshParser,
  type MeshParserOptions,
  type MeshSource,
  type LoadMeshSourceOptions,
} from "./mesh-parser.js";
export { defaultMesh, defaultMeshYaml } from "./default-mesh.js";
export { watchMeshFile, type MeshWatcher, type WatchMeshFileOptions } from "./watch-mesh-file.js";
export { nodeKind, sidecarIdentity, workloadServices, NODE_METADATA_SDS_SOCKET, NODE_METADATA_SDS_TOKEN_PATH, redactNodeMetadata, type NodeInfo, type NodeKind, type SidecarIdentity } from "./sidecar-identity.js";
export type { ResourceSet, TranslateOptions } from "./translate/resource-set.js";
export { translateForNode } from "./translate/translate-for-node.js";
export {
  clusterViewKey,
  httpServicesByPort,
  outboundRoute,
  serviceLoadAssignments,
  serviceOutboundClusters,
  sidecarOptions,
  sidecarOwnResources,
  listenerAddress,
} from "./translate/sidecar.js";
export { translateProxyless } from "./translate/proxyless.js";
export { checkConsistency, collectReferences, type References } from "./translate/consistency.js";
export { resourceTypeRegistry } from "./translate/type-registry.js";
export { sdsConfigSource, SDS_CLUSTER_NAME } from "./translate/config-sources.js";
