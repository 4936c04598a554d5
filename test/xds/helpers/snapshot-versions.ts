// The version_info a control plane would send one node for each type, for a mesh
// given as YAML: what replicas must agree on. Run as a script
// (`node --import tsx snapshot-versions.ts MESH_FILE NODE_ID [SDS_SOCKET]`) it prints
// them as JSON, so that a test can compare separate processes.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseMesh, type MeshModel } from "../../../src/mesh/index.js";
import { createMeshController, createSnapshotCache, type WatchNode } from "../../../src/xds/index.js";

export const TRANSLATE = { trustDomain: "cluster.local", sdsSocketPath: "/var/run/sds/uds_path", tokenPath: "/var/run/secrets/tokens/istio-token" };

/**
 * Per type URL, the version `node` is sent after the controller has published
 * `meshes` in order, while it also serves `others` (connected first).
 */
export function snapshotVersions(meshes: MeshModel[], node: WatchNode, others: WatchNode[] = []): Record<string, string> {
  const cache = createSnapshotCache();
  const controller = createMeshController({ cache, mesh: meshes[0]!, translate: TRANSLATE });
  try {
    for (const o of others) cache.openNode(o);
    cache.openNode(node);
    for (const m of meshes.slice(1)) {
      const problems = controller.setMesh(m);
      if (problems.length > 0) throw new Error(problems.join("; "));
    }
    const snap = cache.getSnapshot(node.id);
    if (!snap) throw new Error(`no snapshot for ${node.id}`);
    return Object.fromEntries([...snap.types].map(([typeUrl, t]) => [typeUrl, t.version]));
  } finally {
    for (const n of [...others, node]) cache.closeNode(n.id);
    controller.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, nodeId] = process.argv.slice(2);
  const mesh = parseMesh(readFileSync(file!, "utf8"), file);
  process.stdout.write(JSON.stringify(snapshotVersions([mesh], { id: nodeId! })));
}
