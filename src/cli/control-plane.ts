// The ADS side of `meshkey serve`: mesh (file or built-in sample) → per-node
// snapshots → ADS/CSDS server, with the mesh file watched.
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { loadMeshFile, defaultMesh } from "../mesh/index.js";
import { createMeshController, createSnapshotCache, startXdsServer, type RunningXdsServer } from "../xds/index.js";
import { parseHostPort, type ServeConfig } from "./serve-config.js";

export interface RunningControlPlane {
  readonly server: RunningXdsServer;
  syncStatus(): unknown;
  configDump(nodeId: string): unknown;
  close(): Promise<void>;
}

/**
 * @param sdsSocketPath the socket the pushed SDS config sources point at (the
 *   agent's actual socket when co-hosted, else the configured one).
 */
export async function startControlPlane(
  config: ServeConfig,
  sdsSocketPath: string,
  log: Logger,
  registry: Registry,
): Promise<RunningControlPlane> {
  // A bad mesh file at start is an error: there is no last good config to keep serving.
  const mesh = config.mesh ? await loadMeshFile(config.mesh) : defaultMesh;
  const cache = createSnapshotCache();
  const controller = createMeshController({
    cache,
    mesh,
    ...(config.mesh ? { meshFile: config.mesh } : {}),
    translate: { trustDomain: config.trustDomain, sdsSocketPath, tokenPath: config.tokenPath },
    logger: log,
    registry,
  });
  let server: RunningXdsServer;
  try {
    server = await startXdsServer({ listen: parseHostPort(config.xdsListen, "--xds-listen"), cache, logger: log, registry });
  } catch (err) {
    controller.close();
    throw err;
  }
  return {
    server,
    syncStatus: () => server.syncStatus(),
    configDump: (nodeId) => controller.configDump(nodeId),
    async close() {
      controller.close();
      await server.close();
    },
  };
}
