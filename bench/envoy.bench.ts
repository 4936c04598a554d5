// Bootstrap rendering, validation and diff throughput, each beside the raw
// JSON.parse + fromJson cost of the same input, measured in the same run.
// Writes BENCHMARKS.md section "envoy".
import { create, fromJson, toJsonString, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { ConfigDumpSchema, BootstrapConfigDumpSchema } from "../gen/envoy/admin/v3/config_dump_pb.js";
import { ClustersConfigDumpSchema, ListenersConfigDumpSchema } from "../gen/envoy/admin/v3/config_dump_shared_pb.js";
import { BootstrapSchema } from "../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { ClusterSchema, Cluster_DiscoveryType } from "../gen/envoy/config/cluster/v3/cluster_pb.js";
import { ListenerSchema } from "../gen/envoy/config/listener/v3/listener_pb.js";
import { HttpConnectionManagerSchema } from "../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { RouterSchema } from "../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import { UpstreamTlsContextSchema, DownstreamTlsContextSchema } from "../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { renderBootstrap } from "../src/bootstrap/index.js";
import { diffEnvoyConfigs, envoyTypeRegistry, parseConfigText, validateEnvoyConfig } from "../src/envoy/index.js";
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { writeBenchmarkSection } from "./report.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const gc = () => (globalThis as { gc?: () => void }).gc?.();

/** Operations per second of `op` over about `seconds` (after a short warm-up). */
function measure(op: () => unknown, seconds: number): number {
  gc();
  let n = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  do {
    op();
    n++;
    now = process.hrtime.bigint();
  } while (now < deadline);
  return n / (Number(now - start) / 1e9);
}

/**
 * Rates of several operations, measured in interleaved rounds (best round of
 * each kept), so that load from other processes hits them alike.
 */
function rates(ops: [string, () => unknown][], seconds = SECONDS, rounds = 8): number[] {
  for (const [, op] of ops) {
    const warm = Date.now() + 300;
    while (Date.now() < warm) op();
  }
  const best = ops.map(() => 0);
  for (let r = 0; r < rounds; r++) ops.forEach(([, op], i) => (best[i] = Math.max(best[i]!, measure(op, seconds / rounds))));
  ops.forEach(([name], i) => console.log(`${name.padEnd(62)} ${best[i]!.toFixed(1).padStart(9)} /s`));
  return best;
}

// --- 1. Bootstrap rendering -------------------------------------------------
let seq = 0;
// A distinct node id per render: no result can be reused from an earlier call.
const sidecar = () => renderBootstrap({ role: "sidecar", nodeId: `sidecar~10.0.${seq % 250}.${seq++ % 250}~httpbin-${seq}.foo`, namespace: "foo", serviceAccount: "httpbin" });
const sidecarText = sidecar().text;
const [renderRate, renderYamlRate, pilotRate, rawBootstrapRate] = rates([
  ["render sidecar bootstrap (template, parse, validate, print)", sidecar],
  ["render sidecar bootstrap as YAML", () => renderBootstrap({ role: "sidecar", nodeId: `sidecar~${seq++}`, format: "yaml" })],
  ["render pilot bootstrap", () => renderBootstrap({ role: "pilot", nodeId: `pilot~${seq++}~p.istio-system` })],
  ["raw: JSON.parse + fromJson of the same sidecar bootstrap", () => fromJson(BootstrapSchema, JSON.parse(sidecarText) as JsonValue, { registry: envoyTypeRegistry })],
]) as [number, number, number, number];

// --- 2. A ~1 MB config dump --------------------------------------------------
// The TLS context of the sidecar's own xds-grpc cluster (SDS default + ROOTCA, SAN
// match) is reused on every generated cluster and listener, as a real mesh does.
const dumpBootstrap = sidecar().bootstrap;
const xds = dumpBootstrap.staticResources!.clusters[0]!;
const upstreamTls = xds.transportSocket!;
const commonTls = anyUnpack(upstreamTls.configType.value as Any, UpstreamTlsContextSchema)!.commonTlsContext;

function cluster(i: number): MessageInitShape<typeof ClusterSchema> {
  const name = `outbound|8000||svc-${i}.ns-${i % 17}.svc.cluster.local`;
  return {
    name,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
    connectTimeout: { seconds: 1n },
    loadAssignment: {
      clusterName: name,
      endpoints: [
        {
          lbEndpoints: [0, 1].map((j) => ({
            hostIdentifier: {
              case: "endpoint" as const,
              value: { address: { address: { case: "socketAddress" as const, value: { address: `10.${i % 250}.${j}.1`, portSpecifier: { case: "portValue" as const, value: 8000 } } } } },
            },
          })),
        },
      ],
    },
    transportSocket: upstreamTls,
  };
}

function listener(i: number, clusters: number): MessageInitShape<typeof ListenerSchema> {
  const hcm = create(HttpConnectionManagerSchema, {
    statPrefix: `inbound_${i}`,
    routeSpecifier: {
      case: "routeConfig",
      value: {
        name: `route-${i}`,
        virtualHosts: [
          {
            name: `vh-${i}`,
            domains: [`svc-${i}.example`, "*"],
            routes: [{ match: { pathSpecifier: { case: "prefix", value: "/" } }, action: { case: "route", value: { clusterSpecifier: { case: "cluster", value: `outbound|8000||svc-${i % clusters}.ns-${(i % clusters) % 17}.svc.cluster.local` } } } }],
          },
        ],
      },
    },
    httpFilters: [{ name: "envoy.filters.http.router", configType: { case: "typedConfig", value: anyPack(RouterSchema, create(RouterSchema)) } }],
  });
  const tls = create(DownstreamTlsContextSchema, {
    requireClientCertificate: true,
    commonTlsContext: commonTls,
  });
  return {
    name: `inbound-${i}`,
    address: { address: { case: "socketAddress", value: { address: "0.0.0.0", portSpecifier: { case: "portValue", value: 10000 + i } } } },
    filterChains: [
      {
        filters: [{ name: "envoy.filters.network.http_connection_manager", configType: { case: "typedConfig", value: anyPack(HttpConnectionManagerSchema, hcm) } }],
        transportSocket: { name: "envoy.transport_sockets.tls", configType: { case: "typedConfig", value: anyPack(DownstreamTlsContextSchema, tls) } },
      },
    ],
  };
}

function configDump(clusters: number, listeners: number, changed = -1): string {
  const cs = Array.from({ length: clusters }, (_, i) => {
    const c = cluster(i);
    if (i === changed) c.connectTimeout = { seconds: 2n };
    return { versionInfo: "1", cluster: anyPack(ClusterSchema, create(ClusterSchema, c)) };
  });
  const ls = Array.from({ length: listeners }, (_, i) => ({
    name: `inbound-${i}`,
    activeState: { versionInfo: "1", listener: anyPack(ListenerSchema, create(ListenerSchema, listener(i, clusters))) },
  }));
  const dump = create(ConfigDumpSchema, {
    configs: [
      anyPack(BootstrapConfigDumpSchema, create(BootstrapConfigDumpSchema, { bootstrap: dumpBootstrap })),
      anyPack(ClustersConfigDumpSchema, create(ClustersConfigDumpSchema, { dynamicActiveClusters: cs })),
      anyPack(ListenersConfigDumpSchema, create(ListenersConfigDumpSchema, { dynamicListeners: ls })),
    ],
  });
  return toJsonString(ConfigDumpSchema, dump, { registry: envoyTypeRegistry, useProtoFieldName: true });
}

// Size the dump to about 1 MB.
let n = 100;
let text = configDump(n, n / 2);
n = Math.round((n * 1_048_576) / Buffer.byteLength(text));
text = configDump(n, Math.round(n / 2));
const changedText = configDump(n, Math.round(n / 2), 7);
if (process.env.BENCH_DUMP_FILE) writeFileSync(process.env.BENCH_DUMP_FILE, text);
const mb = Buffer.byteLength(text) / 1_048_576;
console.log(`config dump: ${n} clusters, ${Math.round(n / 2)} listeners, ${mb.toFixed(2)} MB`);
{
  const v = validateEnvoyConfig(parseConfigText(text, "dump.json"));
  if (v.issues.length > 0) throw new Error(`generated dump is invalid: ${JSON.stringify(v.issues.slice(0, 3))}`);
  const d = diffEnvoyConfigs(JSON.parse(text), JSON.parse(changedText));
  if (d.changes.length !== 1) throw new Error(`expected one change, got ${d.changes.length}`);
}

const [rawParse, validate, diff] = rates(
  [
    ["raw: JSON.parse + fromJson(ConfigDump) of 1 MB", () => fromJson(ConfigDumpSchema, JSON.parse(text) as JsonValue, { registry: envoyTypeRegistry })],
    ["validate 1 MB dump (parse, PGV, cross-refs)", () => validateEnvoyConfig(parseConfigText(text, "dump.json"))],
    ["diff two 1 MB dumps (parse both, canonicalise, compare)", () => diffEnvoyConfigs(JSON.parse(text), JSON.parse(changedText))],
  ],
  SECONDS * 2,
) as [number, number, number];

const ms = (perSec: number) => (1000 / perSec).toFixed(1);
const mbs = (perSec: number, mbPerOp: number) => (perSec * mbPerOp).toFixed(1);
const md = `## Bootstrap rendering, validation, diff
\`npm run bench -- envoy\` (Node ${process.versions.node}, ${new Date().toISOString().slice(0, 16)}Z, load average ${loadavg()[0]!.toFixed(1)} on 2 cores at the end; each figure is the best of 8 rounds interleaved with its raw
limit, so that load from other processes hits both alike). Templates are compiled once; every render has a distinct
node id and parses the rendered JSON into the Bootstrap message (fromJson, registry, unknown fields rejected) and runs
the full validator before printing: the whole-JSON strict parse alone is the raw limit beside it. The render parses each
google.protobuf.Any payload (TLS contexts, HCM, filters: most of fromJson's time) once per distinct JSON text, with
fromJson, and the rest of the bootstrap with fromJson; the message is the same, so a render can beat that limit.
History: before that (every Any parsed inline, ~185 µs a render), the sidecar render measured 3795/s (raw 5192/s,
published run), and on 2026-11-23 between 12:30Z and 12:42Z, under load averages 4–7 from other work, 932–4554/s
(raw 1202–6089/s in the same runs).

| Operation | Rate | Raw limit (same run) | Ratio |
|---|---|---|---|
| render sidecar bootstrap (JSON) | ${renderRate.toFixed(0)} /s | JSON.parse + fromJson: ${rawBootstrapRate.toFixed(0)} /s | ${renderRate >= rawBootstrapRate ? `${(renderRate / rawBootstrapRate).toFixed(1)}× faster` : `${(rawBootstrapRate / renderRate).toFixed(1)}× slower`} |
| render sidecar bootstrap (YAML) | ${renderYamlRate.toFixed(0)} /s | | |
| render pilot bootstrap | ${pilotRate.toFixed(0)} /s | | |

Config dump: ${n} clusters (SDS TLS contexts, 2 endpoints each) and ${Math.round(n / 2)} listeners (HCM with inline routes), ${mb.toFixed(2)} MB of JSON.

| Operation | Time | Throughput | Raw JSON.parse + fromJson | Ratio |
|---|---|---|---|---|
| validate (strict parse, PGV rules, cluster/SDS cross-refs) | ${ms(validate)} ms | ${mbs(validate, mb)} MB/s | ${ms(rawParse)} ms (${mbs(rawParse, mb)} MB/s) | ${(rawParse / validate).toFixed(1)}× slower |
| diff two dumps (one changed field) | ${ms(diff)} ms | ${mbs(diff, 2 * mb)} MB/s of input | ${(2 * 1000 / rawParse).toFixed(1)} ms for both | ${(rawParse / (2 * diff)).toFixed(1)}× slower |
`;
writeBenchmarkSection("envoy", md);
console.log("\n" + md);
