// Pinning for the SDS bench: the agent (this process) and the floor servers on core 0, the
// load (grpc-js client process, Envoy) on core 1, with taskset when the machine has it and
// two cores or more; otherwise nothing is pinned and the report says so.
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";

export const SERVER_CORE = 0;
export const CLIENT_CORE = 1;

export const canPin: boolean = cpus().length >= 2 && spawnSync("taskset", ["-c", "0", "true"]).status === 0;

/** `cmd` run on `core` (taskset), or as it is when pinning is not available. */
export function onCore(core: number, cmd: string[]): string[] {
  return canPin ? ["taskset", "-c", String(core), ...cmd] : cmd;
}

/** Moves every thread of a running process to `core` (-1: every core), and its later threads inherit it. */
export function pinProcess(pid: number, core: number): boolean {
  const cores = core < 0 ? `0-${cpus().length - 1}` : String(core);
  return canPin && spawnSync("taskset", ["-a", "-c", "-p", cores, String(pid)], { stdio: "ignore" }).status === 0;
}

export const pinningNote = (): string =>
  canPin
    ? `agent and floor servers pinned to core ${SERVER_CORE}, the client (grpc-js process, Envoy) to core ${CLIENT_CORE} (taskset)`
    : "not pinned (taskset or a second core missing): client and server share the cores";
