// The floor servers in their own process (pinned like the agent): one socket per kind
// under the given directory. Prints {"sockets": {kind: path}} when listening, then answers
// {"cpu": true} with its CPU time so far (process.cpuUsage: every thread), and exits when
// its stdin closes. sds.bench.ts starts it (SDS_BENCH_FLOOR_NODE_ARGS gives it node flags such
// as --cpu-prof):
//   node --import tsx bench/sds/floor-server.ts DIR PEM_FILE [KIND,KIND…]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FLOOR_KINDS, floorResponse, startFloorServer, type FloorKind, type FloorServer } from "./floor-servers.js";
import { LineProcess, serveLines } from "./line-process.js";
import { onCore, SERVER_CORE } from "./cores.js";
import { fileURLToPath } from "node:url";

export interface FloorProcess {
  sockets: Record<FloorKind, string>;
  pid: number;
  /** CPU milliseconds of the server process so far. */
  cpuMs(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts the floor-server process for `kinds`; the response carries `pemFile` as certificate and key. */
export async function startFloorProcess(dir: string, pemFile: string, kinds: readonly FloorKind[], nodeArgs: string[] = []): Promise<FloorProcess> {
  const p = new LineProcess(onCore(SERVER_CORE, [process.execPath, ...nodeArgs, "--import", "tsx", fileURLToPath(import.meta.url), dir, pemFile, kinds.join(",")]));
  const { sockets } = await p.next<{ sockets: Record<FloorKind, string> }>();
  return {
    sockets,
    pid: p.pid,
    cpuMs: async () => (await p.ask<{ cpuMs: number }>({ cpu: true })).cpuMs,
    stop: () => p.stop(),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, pemFile, list] = process.argv.slice(2);
  const pem = readFileSync(pemFile!, "utf8");
  const response = floorResponse(pem, pem);
  const kinds = (list ? list.split(",") : FLOOR_KINDS) as FloorKind[];
  const servers: FloorServer[] = [];
  const sockets: Record<string, string> = {};
  for (const kind of kinds) {
    sockets[kind] = join(dir!, `${kind}.sock`);
    servers.push(await startFloorServer(kind, sockets[kind]!, response));
  }
  process.stdout.write(`${JSON.stringify({ sockets })}\n`);
  await serveLines(async () => {
    const u = process.cpuUsage();
    return { cpuMs: (u.user + u.system) / 1000 };
  });
  await Promise.all(servers.map((s) => s.close()));
  process.exit(0);
}
