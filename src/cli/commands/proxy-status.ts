// `meshkey proxy-status [NODE]`: the sync state of every connected proxy (as
// `istioctl proxy-status`), read from meshkey's CSDS over gRPC and /debug/sds.
import { toJson } from "@bufbuild/protobuf";
import { ClientStatusResponseSchema } from "../../../gen/envoy/service/status/v3/csds_pb.js";
import { envoyTypeRegistry } from "../../envoy/index.js";
import { parseFlags, runCommand, UsageError, type CliCommand } from "../command.js";
import { addressFlag, DEFAULT_ADMIN, DEFAULT_XDS, meshkeyEndpoints, UnreachableError, type MeshkeyEndpoints, DEBUG_SDS_LIMIT } from "../meshkey-endpoints.js";
import { ADS_TYPES, proxySyncs, type ProxySync, type SdsDebugJson, type TypeSync } from "../proxy-sync.js";
import { formatAge, formatTable, terminalSafe } from "../terminal-text.js";

const help = `meshkey proxy-status — the sync state of the proxies connected to a running meshkey

Usage: meshkey proxy-status [NODE] [--xds ADDR] [--admin ADDR] [-o text|json]

Without NODE: one line per connected proxy (Envoy sidecar or proxyless gRPC client)
with, for CDS, LDS, EDS and RDS, what meshkey's CSDS says of it:
  SYNCED     the proxy ACKed the version meshkey holds for it
  STALE (t)  sent t ago and not ACKed yet (or a newer version is not sent yet)
  NACKED     the proxy refused the version it was sent: Envoy's message follows the table
  NOT SENT   the proxy did not subscribe
and SDS for the node's identity (from /debug/sds; "-" for proxyless clients or --no-sds).

With NODE: what meshkey sent that node against what it ACKed, per type: the version
sent and the version ACKed, the resources of the sent version, and Envoy's message
for a refused one. Exit status 0 when every type is SYNCED, 1 otherwise.

Options:
  --xds HOST:PORT     meshkey's ADS/CSDS address (default ${DEFAULT_XDS}, serve's --xds-listen)
  --admin HOST:PORT   meshkey's admin address (default ${DEFAULT_ADMIN}, serve's --admin-listen)
  -o, --output FMT    text (default) or json (the CSDS ClientStatusResponse, proto JSON)

Examples:
  meshkey proxy-status
  meshkey proxy-status 'sidecar~127.0.1.2~sleep-1.foo~foo.svc.cluster.local'`;

function cell(t: TypeSync, now: number): string {
  if (t.state === "STALE" && t.sentAt) return `STALE (${formatAge(now - t.sentAt.getTime())})`;
  return t.state;
}

function overview(syncs: ProxySync[], now: number): string {
  if (syncs.length === 0) return "no proxy is connected\n";
  const headers = ["NAME", "KIND", ...ADS_TYPES.map((t) => t.short), "SDS"];
  const rows = syncs.map((p) => [p.nodeId, p.kind, ...p.types.map((t) => cell(t, now))]);
  let out = formatTable(headers, rows);
  const nacks = syncs.flatMap((p) => p.types.filter((t) => t.nack).map((t) => ({ p, t })));
  if (nacks.length > 0) {
    out += "\n";
    for (const { p, t } of nacks) out += `${terminalSafe(p.nodeId)} ${t.type} NACKED (version ${terminalSafe(t.nack!.version)}): ${terminalSafe(t.nack!.message)}\n`;
  }
  return out;
}

interface SynczType {
  typeUrl: string;
  versionSent: string;
  versionAcked: string;
  responses: number;
}

async function nodeDetail(endpoints: MeshkeyEndpoints, p: ProxySync, now: number): Promise<string> {
  const syncz = (await endpoints.adminJson<Array<{ nodeId: string; types: SynczType[] }>>("/debug/syncz", { allow404: true })) ?? [];
  const tracked = syncz.find((n) => n.nodeId === p.nodeId)?.types ?? [];
  let out = `${terminalSafe(p.nodeId)} (${p.kind}${p.spiffeId ? `, ${terminalSafe(p.spiffeId)}` : ""})\n\n`;
  const rows = p.types.map((t) => {
    const typeUrl = ADS_TYPES.find((a) => a.short === t.type)?.typeUrl;
    const s = tracked.find((x) => x.typeUrl === typeUrl);
    const acked = t.type === "SDS" ? (t.state === "SYNCED" ? t.version : "") : (s?.versionAcked ?? "");
    return [t.type, cell(t, now), t.version || "-", acked || "-", String(t.resources.length)];
  });
  out += formatTable(["TYPE", "STATE", "SENT", "ACKED", "RESOURCES"], rows);
  for (const t of p.types) {
    if (t.state === "-" || t.resources.length === 0) continue;
    const same = t.state === "SYNCED";
    out += `\n${t.type} ${same ? "match: the proxy ACKed what meshkey sent" : "differ: meshkey sent, the proxy has not ACKed"}${t.version ? ` (version ${terminalSafe(t.version)})` : ""}\n`;
    if (t.nack) out += `  Envoy's message: ${terminalSafe(t.nack.message)}\n`;
    if (!same) for (const name of t.resources) out += `  + ${terminalSafe(name)}\n`;
  }
  return out;
}

export const command: CliCommand = {
  help,
  run: (argv) =>
    runCommand(help, async () => {
      const { values, positionals } = parseFlags(
        argv,
        { xds: { type: "string", default: DEFAULT_XDS }, admin: { type: "string", default: DEFAULT_ADMIN }, output: { type: "string", short: "o", default: "text" } },
        true,
      );
      if (positionals.length > 1) throw new UsageError("proxy-status takes at most one NODE");
      if (values.output !== "text" && values.output !== "json") throw new UsageError(`-o/--output: "${values.output}" is not text or json`);
      const endpoints = meshkeyEndpoints({ xds: addressFlag(values.xds, "--xds"), admin: addressFlag(values.admin, "--admin") });
      const nodeId = positionals[0];
      const status = await endpoints.clientStatus(nodeId);
      if (values.output === "json") {
        process.stdout.write(`${JSON.stringify(toJson(ClientStatusResponseSchema, status, { registry: envoyTypeRegistry }), null, 2)}\n`);
        return 0;
      }
      const sds = await endpoints.adminJson<SdsDebugJson>(`/debug/sds?limit=${DEBUG_SDS_LIMIT}`, { allow404: true });
      const syncs = proxySyncs(status, sds);
      const now = Date.now();
      if (nodeId === undefined) {
        process.stdout.write(overview(syncs, now));
        return 0;
      }
      const p = syncs.find((s) => s.nodeId === nodeId);
      if (!p) throw new UnreachableError(`no proxy "${terminalSafe(nodeId)}" is connected to meshkey at ${endpoints.xds} (see meshkey proxy-status)`);
      process.stdout.write(await nodeDetail(endpoints, p, now));
      return p.types.every((t) => t.state === "SYNCED" || t.state === "-") ? 0 : 1;
    }),
};
