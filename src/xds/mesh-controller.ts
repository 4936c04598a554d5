// Mesh model → per-node snapshots in the cache. Nodes are translated when their
// first stream opens; a new mesh is translated for every known node, checked for
// consistency, and published only if every node's set is good (else the last good
// snapshots keep serving). Nodes that translate alike share one encoded snapshot.
import type { JsonObject } from "@bufbuild/protobuf";
import { pino, type Logger } from "pino";
import { Counter, Gauge, Registry } from "prom-client";
import {
  checkConsistency,
  defaultMesh,
  nodeKind,
  sidecarIdentity,
  translateForNode,
  watchMeshFile,
  type MeshModel,
  type MeshWatcher,
  type NodeInfo,
  type TranslateOptions,
} from "../mesh/index.js";
import type { SnapshotCache } from "./cache/snapshot-cache.js";
import type { Snapshot } from "./cache/snapshot.js";
import { snapshotConsistency } from "./cache/consistency.js";
import { snapshotFromResources, type ResourceIntern } from "./resource/resource-snapshot.js";
import { snapshotConfigDump } from "./resource/envoy-forms.js";
import { ConfigDumpSchema } from "../../gen/envoy/admin/v3/config_dump_pb.js";
import { canonicalMessageJson } from "../envoy/index.js";

export interface MeshControllerOptions {
  cache: SnapshotCache;
  translate: TranslateOptions;
  /** Initial model (default: the built-in sample mesh). */
  mesh?: MeshModel;
  /** Watch this file: a valid change is published, an invalid one logged, counted and ignored. */
  meshFile?: string;
  logger?: Logger;
  registry?: Registry;
}

export interface MeshController {
  mesh(): MeshModel;
  /** Publishes a new model. Returns the problems that made it rejected (empty when published). */
  setMesh(model: MeshModel): string[];
  /** Canonical JSON of what node `nodeId` is served, or undefined if the node is unknown. */
  configDump(nodeId: string): JsonObject | undefined;
  /** Number of accepted mesh changes since start. */
  generation(): number;
  /** Nodes the controller still remembers (for tests and debug): those that have a snapshot. */
  knownNodeCount(): number;
  close(): void;
}

export class MeshRejectedError extends Error {
  override name = "MeshRejectedError";
}

export function createMeshController(options: MeshControllerOptions): MeshController {
  const { cache, translate } = options;
  const logger = options.logger ?? pino({ level: "silent" });
  const registry = options.registry ?? new Registry();
  const metric = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const reloads = metric("meshkey_mesh_reloads_total", () => new Counter({ name: "meshkey_mesh_reloads_total", help: "Mesh changes, by result (ok | invalid)", labelNames: ["result"], registers: [registry] }));
  const services = metric("meshkey_mesh_services", () => new Gauge({ name: "meshkey_mesh_services", help: "Services in the serving mesh", registers: [registry] }));

  let current = options.mesh ?? defaultMesh;
  let generation = 0;
  let memo = new Map<string, Snapshot>();
  const known = new Map<string, NodeInfo>();
  services.set(current.services.length);

  const keyOf = (node: NodeInfo) => (nodeKind(node) === "proxyless" ? "proxyless" : `sidecar:${JSON.stringify(sidecarIdentity(node))}`);

  // Packed resources shared between the nodes' snapshots of one mesh generation.
  let intern: ResourceIntern = new Map();

  const build = (model: MeshModel, node: NodeInfo, table: Map<string, Snapshot>, shared: ResourceIntern): Snapshot => {
    const key = keyOf(node);
    let snap = table.get(key);
    if (!snap) {
      const set = translateForNode(model, node, translate);
      const problems = checkConsistency(set);
      if (problems.length > 0) throw new MeshRejectedError(`node ${node.id}: ${problems.join("; ")}`);
      snap = snapshotFromResources(set, shared);
      const dangling = snapshotConsistency(snap);
      if (dangling.length > 0) throw new MeshRejectedError(`node ${node.id}: ${dangling.join("; ")}`);
      table.set(key, snap);
    }
    return snap;
  };

  // Nodes whose snapshot went away with their last stream are forgotten; pruned once `known`
  // doubles, so a stream of short-lived nodes costs amortised O(1) and leaves nothing behind.
  let pruneAt = 64;
  const forgetGone = () => {
    for (const id of [...known.keys()]) if (!cache.getSnapshot(id)) known.delete(id);
    pruneAt = Math.max(64, known.size * 2);
  };

  cache.setNodeResolver((node) => {
    if (known.size >= pruneAt) forgetGone();
    known.set(node.id, node);
    try {
      cache.setSnapshot(node.id, build(current, node, memo, intern));
    } catch (err) {
      logger.error({ node: node.id, err: (err as Error).message }, "cannot translate the mesh for this node");
    }
  });

  const setMesh = (model: MeshModel): string[] => {
    const table = new Map<string, Snapshot>();
    const shared: ResourceIntern = new Map();
    const next = new Map<string, Snapshot>();
    for (const node of cache.connectedNodes()) known.set(node.id, node);
    forgetGone();
    try {
      for (const [id, node] of known) next.set(id, build(model, node, table, shared));
    } catch (err) {
      reloads.inc({ result: "invalid" });
      logger.error({ err: (err as Error).message }, "mesh change rejected: inconsistent resources; the last good snapshot keeps serving");
      return [(err as Error).message];
    }
    current = model;
    memo = table;
    intern = shared;
    generation++;
    reloads.inc({ result: "ok" });
    services.set(model.services.length);
    for (const [id, snap] of next) cache.setSnapshot(id, snap);
    logger.info({ services: model.services.length, nodes: next.size, generation }, "mesh published");
    return [];
  };

  let watcher: MeshWatcher | undefined;
  if (options.meshFile) {
    const file = options.meshFile;
    watcher = watchMeshFile(
      file,
      (model) => void setMesh(model),
      (err) => {
        reloads.inc({ result: "invalid" });
        logger.error({ file, err: err.message }, "mesh change rejected; the last good snapshot keeps serving");
      },
    );
  }

  return {
    mesh: () => current,
    setMesh,
    configDump(nodeId) {
      // Envoy's own form: the envoy.admin.v3.ConfigDump the node's Envoy prints at /config_dump?include_eds.
      const snap = cache.getSnapshot(nodeId);
      if (!snap) return undefined;
      const node = known.get(nodeId) ?? { id: nodeId };
      return canonicalMessageJson(ConfigDumpSchema, snapshotConfigDump(node, snap)) as JsonObject;
    },
    generation: () => generation,
    knownNodeCount() {
      forgetGone();
      return known.size;
    },
    close() {
      watcher?.close();
      cache.setNodeResolver(undefined);
    },
  };
}
