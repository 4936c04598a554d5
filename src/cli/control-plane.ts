// Temporary: wired to src/xds + src/mesh once their controller lands.
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { ServeConfig } from "./serve-config.js";
import type { RunningGrpcServer } from "../net/index.js";

export interface RunningControlPlane {
  server: RunningGrpcServer;
  syncStatus(): unknown;
  configDump(nodeId: string): unknown;
  close(): Promise<void>;
}

export async function startControlPlane(_c: ServeConfig, _l: Logger, _r: Registry): Promise<RunningControlPlane> {
  throw new Error("control plane not wired yet");
}
