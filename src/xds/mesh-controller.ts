// Mesh model → per-node snapshots in the cache. Nodes are translated when their
// first stream opens; a new mesh is translated for every connected node (the cache's
// node registry is the only one), checked for consistency, and published only if every
// node's set is good (else the last good snapshots keep serving). What does not depend
// on the node is translated once per view and shared (translation-cache.ts); changes of
// the watched file are debounced as istiod does (100 ms after the last, at most 1 s).
import type { JsonObject } from "@bufbuild/protobuf";
import { pino, type Logger } from "pino";
import { Counter, Gauge, Registry } from "prom-client";
import {
  defaultMesh,
  watchMeshFile,
  type MeshModel,
  type MeshParser,
  type MeshSource,
  type MeshWatcher,
  type TranslateOptions,
} from "../mesh/index.js";
import type { SnapshotCache } from "./cache/snapshot-cache.js";
import type { WatchNode } from "./cache/watch.js";
import type { Snapshot } from "./cache/snapshot.js";
import { createDebouncer, type DebounceOptions, type Debouncer } from "./push-debounce.js";
import { createTranslationCache, TranslationError, type MeshTranslation } from "./translation-cache.js";
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
  /**
   * The mesh file read once at start (loadMeshSource): its model is the initial one, its file is
   * watched, and the watch starts from the bytes read, so a change written since is published.
   */
  meshSource?: MeshSource;
  /** Parses the watched file off the main thread (default: the process's shared parser). */
  meshParser?: MeshParser;
  /** Refuse a watched mesh file larger than this many bytes, before parsing it (default 16 MiB). */
  maxMeshBytes?: number;
  /**
   * A change that removes more than half of the serving services is logged as a warning;
   * with this set it is refused (counted as invalid), as Istio guards against config wipes.
   */
  guardMassRemoval?: boolean;
  /** Debounce of watched-file changes (default 100 ms after the last change, at most 1 s; injectable clock). */
  debounce?: DebounceOptions;
  logger?: Logger;
  registry?: Registry;
}

export interface MeshController {
  mesh(): MeshModel;
  /** Publishes a new model. Returns the problems that made it rejected (empty when published). */
  setMesh(model: MeshModel): string[];
  /** Canonical JSON of what node `nodeId` is served, or undefined if the node is unknown. */
  configDump(nodeId: string): JsonObject | undefined;
  /** Resolves once the mesh file (if any) is watched: a change after this is seen. */
  watching(): Promise<void>;
  /** Number of accepted mesh changes since start. */
  generation(): number;
  /** Nodes the controller still remembers (for tests and debug): those that have a snapshot. */
  knownNodeCount(): number;
  /** Read-only: when the serving mesh was accepted, and the last change refused (for the status page). */
  history(): MeshHistory;
  close(): void;
}

export interface MeshHistory {
  /** The watched file, if any. */
  file: string | undefined;
  /** When the serving mesh was accepted (the start, for generation 0). */
  lastGood: { at: string; generation: number };
  /** The last change that was refused (unreadable, invalid or inconsistent), with why; null if none. */
  lastRejected: { at: string; error: string } | null;
}

export class MeshRejectedError extends Error {
  override name = "MeshRejectedError";
}

/** Services of `from` (by host) that `to` no longer has. */
function removedServices(from: MeshModel, to: MeshModel): string[] {
  const kept = new Set(to.services.map((s) => s.host));
  return from.services.map((s) => s.host).filter((h) => !kept.has(h));
}

/** Whether going from `from` to `to` drops more than half of the services. */
function isMassRemoval(from: MeshModel, removed: number): boolean {
  return from.services.length > 0 && removed * 2 > from.services.length;
}

export function createMeshController(options: MeshControllerOptions): MeshController {
  const { cache, translate } = options;
  const logger = options.logger ?? pino({ level: "silent" });
  const registry = options.registry ?? new Registry();
  const metric = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const reloads = metric("meshkey_mesh_reloads_total", () => new Counter({ name: "meshkey_mesh_reloads_total", help: "Mesh changes, by result: ok | invalid (unreadable, too large, not YAML, empty, inconsistent, or refused by --guard-mass-removal)", labelNames: ["result"], registers: [registry] }));
  for (const result of ["ok", "invalid"]) reloads.inc({ result }, 0);
  const services = metric("meshkey_mesh_services", () => new Gauge({ name: "meshkey_mesh_services", help: "Services in the serving mesh", registers: [registry] }));

  const meshFile = options.meshSource?.file ?? options.meshFile;
  let current = options.meshSource?.model ?? options.mesh ?? defaultMesh;
  let generation = 0;
  services.set(current.services.length);

  // The shared views and node parts of the serving mesh; a new mesh reuses what did not change.
  const translations = createTranslationCache(translate);
  let serving: MeshTranslation = translations.translate(current);
  translations.commit(serving);

  const build = (t: MeshTranslation, node: WatchNode): Snapshot => {
    try {
      return t.snapshotFor(node);
    } catch (err) {
      if (err instanceof TranslationError) throw new MeshRejectedError(err.message);
      throw err;
    }
  };

  // What nodes that went away used is dropped once the node parts double the connected
  // nodes, so a stream of short-lived nodes costs amortised O(1) and leaves nothing behind.
  let pruneAt = 64;
  const prune = () => {
    const live = cache.connectedNodes();
    serving.retain(live);
    pruneAt = Math.max(64, live.length * 2);
  };

  cache.setNodeResolver((node) => {
    if (serving.size().nodes >= pruneAt) prune();
    try {
      cache.setSnapshot(node.id, build(serving, node));
    } catch (err) {
      logger.error({ node: node.id, err: (err as Error).message }, "cannot translate the mesh for this node");
    }
  });

  const setMesh = (model: MeshModel): string[] => {
    const removed = removedServices(current, model);
    if (isMassRemoval(current, removed.length)) {
      const what = {
        services: current.services.length,
        remaining: model.services.length,
        removed: removed.length,
        sample: removed.slice(0, 10),
        ...(meshFile ? { file: meshFile } : {}),
      };
      const summary = `${removed.length} of ${current.services.length} services`;
      if (options.guardMassRemoval) {
        reloads.inc({ result: "invalid" });
        const message = `mesh change refused by --guard-mass-removal: it removes ${summary}${meshFile ? ` (${meshFile})` : ""}`;
        logger.error(what, `${message}; the last good snapshot keeps serving`);
        return [message];
      }
      logger.warn(what, `mesh change removes ${summary} (more than half); publishing it (--guard-mass-removal would refuse it)`);
    }
    const t = translations.translate(model);
    const next = new Map<string, Snapshot>();
    try {
      for (const node of cache.connectedNodes()) next.set(node.id, build(t, node));
    } catch (err) {
      reloads.inc({ result: "invalid" });
      logger.error({ err: (err as Error).message }, "mesh change rejected: inconsistent resources; the last good snapshot keeps serving");
      return [(err as Error).message];
    }
    current = model;
    serving = t;
    translations.commit(t);
    pruneAt = Math.max(64, next.size * 2);
    generation++;
    reloads.inc({ result: "ok" });
    services.set(model.services.length);
    for (const [id, snap] of next) cache.setSnapshot(id, snap);
    logger.info({ services: model.services.length, nodes: next.size, generation }, "mesh published");
    return [];
  };

  // What history() reports, recorded around setMesh (which stays as it is). A change's time is
  // when it arrived, before its translation.
  let lastGood = { at: new Date().toISOString(), generation };
  let lastRejected: MeshHistory["lastRejected"] = null;
  const recordedSetMesh = (model: MeshModel): string[] => {
    const at = new Date().toISOString();
    const problems = setMesh(model);
    if (problems.length === 0) lastGood = { at, generation };
    else lastRejected = { at, error: problems.join("; ") };
    return problems;
  };

  let watcher: MeshWatcher | undefined;
  let debouncer: Debouncer<MeshModel> | undefined;
  if (meshFile) {
    const file = meshFile;
    const debounced: Debouncer<MeshModel> = createDebouncer((model) => void recordedSetMesh(model), options.debounce);
    debouncer = debounced;
    watcher = watchMeshFile(file, {
      onChange: (model) => debounced.push(model),
      onError: (err) => {
        lastRejected = { at: new Date().toISOString(), error: err.message };
        reloads.inc({ result: "invalid" });
        logger.error({ file, err: err.message }, "mesh change rejected; the last good snapshot keeps serving");
      },
      ...(options.maxMeshBytes === undefined ? {} : { maxBytes: options.maxMeshBytes }),
      ...(options.meshSource ? { initial: options.meshSource.contents } : {}),
      ...(options.meshParser ? { parser: options.meshParser } : {}),
    });
  }

  return {
    mesh: () => current,
    setMesh: recordedSetMesh,
    configDump(nodeId) {
      // Envoy's own form: the envoy.admin.v3.ConfigDump the node's Envoy prints at /config_dump?include_eds.
      const snap = cache.getSnapshot(nodeId);
      if (!snap) return undefined;
      const node = cache.connectedNode(nodeId) ?? { id: nodeId };
      return canonicalMessageJson(ConfigDumpSchema, snapshotConfigDump(node, snap)) as JsonObject;
    },
    // The catch-up read at the start of the watch is published at once, not debounced.
    watching: () => (watcher?.ready ?? Promise.resolve()).then(() => debouncer?.flush()),
    generation: () => generation,
    knownNodeCount: () => cache.connectedNodes().filter((n) => cache.getSnapshot(n.id) !== undefined).length,
    history: () => ({ file: meshFile, lastGood, lastRejected }),
    close() {
      watcher?.close();
      debouncer?.cancel();
      cache.setNodeResolver(undefined);
    },
  };
}
