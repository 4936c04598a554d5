// Real Envoy as the SDS client of the first-secret bench. Envoy opens one SDS stream per
// secret name and distinct config source, so one Envoy whose N static clusters each name
// "default" over a config source with its own token file (file_based_metadata call
// credentials, as meshkey's translation builds it: sdsConfigSource of src/mesh) opens N
// streams carrying N identities. Measured: from Envoy's spawn until its admin counts N
// applied secrets (sds.default.update_success, one scope for all N subscriptions of that
// name), the agent process's CPU over that time, Envoy's own CPU, and the number of
// connections it opened to the socket.
import { spawnSync } from "node:child_process";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { create, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { BootstrapSchema } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { Cluster_DiscoveryType, type ClusterSchema } from "../../gen/envoy/config/cluster/v3/cluster_pb.js";
import { UpstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { envoyTypeRegistry } from "../../src/envoy/index.js";
import { sdsConfigSource } from "../../src/mesh/index.js";
import { envoyBinary, freePort, startEnvoy } from "../../test/support/envoy.js";
import { CLIENT_CORE, pinProcess } from "./cores.js";

/** The Envoy stat that counts secrets applied from SDS for the name "default" (all N subscriptions). */
export const DELIVERED_STAT = "sds.default.update_success";

export interface EnvoySdsRun {
  streams: number;
  /** From Envoy's spawn until it counted N applied secrets. */
  totalMs: number;
  /** Agent process CPU (all threads) over totalMs: SDS server, issuance, and this bench's admin polling. */
  agentCpuMs: number;
  /** Envoy's CPU from spawn to the end (its start-up included). */
  envoyCpuMs: number;
  /** Per stream, from the agent's "SDS stream opened" to its push of "default" (sorted), when a recorder was given. */
  openToPushMs: number[] | undefined;
  /** From Envoy's spawn to the first stream the agent saw open. */
  firstOpenMs: number | undefined;
  pinned: boolean;
}

/** What the agent's SDS log says of each stream: when it opened and when it first pushed "default". */
export interface PushRecorder {
  logger: Logger;
  /** performance.now() of each stream's "SDS stream opened", by stream id. */
  opened: Map<string, number>;
  /** performance.now() of each stream's first "pushing secrets" with "default", by stream id. */
  pushed: Map<string, number>;
}

/** A debug-level logger for the agent's SDS server that notes stream opens and first pushes, and drops every line. */
export function createPushRecorder(): PushRecorder {
  const opened = new Map<string, number>();
  const pushed = new Map<string, number>();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const line = chunk.toString();
      const open = line.includes('"msg":"SDS stream opened"');
      const push = line.includes('"msg":"pushing secrets"') && line.includes('"default"');
      if (open || push) {
        const at = performance.now();
        const { stream } = JSON.parse(line) as { stream: string };
        if (open) opened.set(stream, at);
        else if (!pushed.has(stream)) pushed.set(stream, at);
      }
      cb();
    },
  });
  return { logger: pino({ level: "debug" }, sink), opened, pushed };
}

export const envoyAvailable = (): boolean => envoyBinary() !== null;

function cluster(i: number, socketPath: string, tokenPath: string): MessageInitShape<typeof ClusterSchema> {
  const name = `sds-bench-${i}`;
  const tls = create(UpstreamTlsContextSchema, {
    commonTlsContext: {
      tlsCertificateSdsSecretConfigs: [{ name: "default", sdsConfig: sdsConfigSource({ trustDomain: "cluster.local", sdsSocketPath: socketPath, tokenPath }) }],
    },
  });
  return {
    name,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
    connectTimeout: { seconds: 1n },
    // Never connected to: the bench sends no traffic, the TLS context only makes Envoy fetch the secret.
    loadAssignment: { clusterName: name, endpoints: [{ lbEndpoints: [{ hostIdentifier: { case: "endpoint", value: { address: { address: { case: "socketAddress", value: { address: "127.0.0.1", portSpecifier: { case: "portValue", value: 9 } } } } } } }] }] },
    transportSocket: { name: "envoy.transport_sockets.tls", configType: { case: "typedConfig", value: anyPack(UpstreamTlsContextSchema, tls) } },
  };
}

/** A static bootstrap: admin on 127.0.0.1:adminPort and one cluster per token file. */
export function envoySdsBootstrap(socketPath: string, tokenPaths: string[], adminPort: number): string {
  const bootstrap = create(BootstrapSchema, {
    node: { id: "sidecar~127.0.0.1~sds-bench.bench~bench.svc.cluster.local", cluster: "sds-bench" },
    admin: { address: { address: { case: "socketAddress", value: { address: "127.0.0.1", portSpecifier: { case: "portValue", value: adminPort } } } } },
    staticResources: { clusters: tokenPaths.map((t, i) => cluster(i, socketPath, t)) },
  });
  return toJsonString(BootstrapSchema, bootstrap, { registry: envoyTypeRegistry });
}

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
function processCpuMs(pid: number): number {
  try {
    const rest = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/**
 * Starts one Envoy (pinned to the client core) with one cluster per token, each fetching
 * "default" from the agent on socketPath, waits (at most timeoutMs) until all N are applied,
 * and stops it by PID.
 */
export async function envoyFirstSecrets(
  dir: string,
  socketPath: string,
  tokens: string[],
  opts: { timeoutMs?: number; recorder?: PushRecorder } = {},
): Promise<EnvoySdsRun> {
  const tokenDir = join(dir, "envoy-tokens");
  mkdirSync(tokenDir, { recursive: true });
  const tokenPaths = tokens.map((t, i) => {
    const p = join(tokenDir, `token-${i}`);
    writeFileSync(p, t, { mode: 0o600 });
    return p;
  });
  const adminPort = await freePort();
  const configPath = join(dir, `envoy-sds-bench-${adminPort}.json`);
  writeFileSync(configPath, envoySdsBootstrap(socketPath, tokenPaths, adminPort));
  const rec = opts.recorder;
  rec?.opened.clear();
  rec?.pushed.clear();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const envoy = await startEnvoy({ config: configPath, adminPort, name: `envoy (${tokens.length} SDS clusters)`, waitReady: false, logLevel: "warn" });
  try {
    const pinned = pinProcess(envoy.pid, CLIENT_CORE);
    await envoy.waitFor(
      `${DELIVERED_STAT} to reach ${tokens.length}`,
      async () => (await envoy.stat(DELIVERED_STAT)) >= tokens.length,
      opts.timeoutMs ?? 120_000,
    );
    const totalMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const openToPushMs = rec ? [...rec.pushed].map(([id, at]) => at - (rec.opened.get(id) ?? NaN)).sort((a, b) => a - b) : undefined;
    const firstOpenMs = rec && rec.opened.size > 0 ? Math.min(...rec.opened.values()) - t0 : undefined;
    return { streams: tokens.length, totalMs, agentCpuMs: (cpu.user + cpu.system) / 1000, envoyCpuMs: processCpuMs(envoy.pid), openToPushMs, firstOpenMs, pinned };
  } finally {
    await envoy.stop();
  }
}
