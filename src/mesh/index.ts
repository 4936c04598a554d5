// Mesh registry (YAML file → validated model, watched) and the pure translator
// (model + node → Envoy resources).
export {
  MeshError,
  serviceHost,
  spiffeId,
  mtlsModeOf,
  targetPort,
  type MeshModel,
  type MeshService,
  type MeshPort,
  type MeshEndpoint,
  type MeshLocality,
  type MeshNamespace,
  type Protocol,
  type MtlsMode,
} from "./model.js";
export { parseMesh, loadMeshFile, readMeshFile, readMeshBytes, DEFAULT_MAX_MESH_BYTES, type ReadMeshOptions } from "./parse-mesh.js";
export {
  createMeshParser,
  sharedMeshParser,
  loadMeshSource,
  DEFAULT_MESH_PARSE_TIMEOUT_MS,
  DEFAULT_MESH_PARSE_HEAP_MB,
  DEFAULT_MESH_PARSE_QUEUE,
  type MeshParser,
  type MeshParserOptions,
  type MeshSource,
  type LoadMeshSourceOptions,
} from "./mesh-parser.js";
export { defaultMesh, defaultMeshYaml } from "./default-mesh.js";
export { watchMeshFile, type MeshWatcher, type WatchMeshFileOptions } from "./watch-mesh-file.js";
export { nodeKind, sidecarIdentity, workloadServices, NODE_METADATA_SDS_SOCKET, NODE_METADATA_SDS_TOKEN_PATH, KNOWN_NODE_METADATA_KEYS, REDACTED_METADATA_VALUE, redactNodeMetadata, type NodeInfo, type NodeKind, type SidecarIdentity } from "./node-info.js";
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
export { checkConsistency, collectReferences, servableSecret, type References } from "./translate/consistency.js";
export { resourceTypeRegistry } from "./translate/type-registry.js";
export { sdsConfigSource, SECRET_DEFAULT, SECRET_ROOTCA, SDS_CLUSTER_NAME } from "./translate/config-sources.js";
