// What `meshkey render` writes: per proxy kind and node (one sidecar per service,
// one proxyless gRPC client), in one of Envoy's own forms, through the same
// translation and cache snapshot as the server:
// - config-dump: the envoy.admin.v3.ConfigDump a synced Envoy prints at
//   /config_dump?include_eds (proto field names, as Envoy prints them);
// - bootstrap: a static bootstrap that `envoy -c` runs (sidecars only: a proxyless
//   gRPC client is no Envoy).
import type { JsonValue } from "@bufbuild/protobuf";
import { ConfigDumpSchema } from "../../gen/envoy/admin/v3/config_dump_pb.js";
import { BootstrapSchema } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { canonicalMessageJson } from "../envoy/index.js";
import { spiffeIdOf } from "../spiffe/index.js";
import {
  checkConsistency,
  NODE_METADATA_SDS_SOCKET,
  NODE_METADATA_SDS_TOKEN_PATH,
  translateForNode,
  type MeshModel,
  type NodeInfo,
  type TranslateOptions,
} from "../mesh/index.js";
import { snapshotConsistency } from "./cache/consistency.js";
import { snapshotConfigDump, staticBootstrap } from "./resource/envoy-forms.js";
import { snapshotFromResources } from "./resource/resource-snapshot.js";

export type RenderFormat = "config-dump" | "bootstrap";
export const RENDER_FORMATS: readonly RenderFormat[] = ["config-dump", "bootstrap"];

export interface RenderOptions extends TranslateOptions {
  /** config-dump (default) or bootstrap. */
  format?: RenderFormat;
  /** Admin port of a bootstrap (127.0.0.1; default 15000). */
  adminPort?: number;
}

export interface RenderedNode {
  /** File name: `<kind>-<node>.json`. */
  file: string;
  node: NodeInfo;
  json: string;
}

/**
 * The nodes `render` writes for a mesh: a sidecar per service (pod `<name>-0` at
 * its first endpoint's address, with the node `meshkey bootstrap --role sidecar`
 * writes), and one proxyless client.
 */
export function renderNodes(mesh: MeshModel, opts?: Partial<TranslateOptions>): NodeInfo[] {
  const nodes: NodeInfo[] = mesh.services.map((s) => {
    const trustDomain = opts?.trustDomain ?? "cluster.local";
    const metadata: Record<string, unknown> = {
      ROLE: "sidecar",
      NAMESPACE: s.namespace,
      SERVICE_ACCOUNT: s.serviceAccount,
      TRUST_DOMAIN: trustDomain,
      SPIFFE_ID: spiffeIdOf(trustDomain, s),
    };
    if (opts?.sdsSocketPath) metadata[NODE_METADATA_SDS_SOCKET] = opts.sdsSocketPath;
    if (opts?.tokenPath) metadata[NODE_METADATA_SDS_TOKEN_PATH] = opts.tokenPath;
    return {
      id: `sidecar~${s.endpoints[0]?.address ?? "10.0.0.1"}~${s.name}-0.${s.namespace}~${s.namespace}.svc.cluster.local`,
      cluster: `${s.name}.${s.namespace}`,
      metadata,
    };
  });
  nodes.push({ id: "proxyless-grpc", metadata: { GENERATOR: "grpc" } });
  return nodes;
}

const printJson = (v: JsonValue) => `${JSON.stringify(v, null, 2)}\n`;

export function renderMesh(mesh: MeshModel, opts: RenderOptions): RenderedNode[] {
  const format = opts.format ?? "config-dump";
  const out: RenderedNode[] = [];
  for (const node of renderNodes(mesh, opts)) {
    const kind = node.metadata?.["GENERATOR"] === "grpc" ? "proxyless" : "sidecar";
    if (format === "bootstrap" && kind === "proxyless") continue;
    const set = translateForNode(mesh, node, opts);
    const problems = checkConsistency(set);
    if (problems.length > 0) throw new Error(`node ${node.id}: ${problems.join("; ")}`);
    const name = kind === "proxyless" ? "grpc" : `${node.id.split("~")[2]}`;
    let json: string;
    if (format === "bootstrap") {
      const b = staticBootstrap(node, set, { adminPort: opts.adminPort ?? 15000, sdsSocketPath: opts.sdsSocketPath, sdsMode: opts.sdsMode });
      json = printJson(canonicalMessageJson(BootstrapSchema, b));
    } else {
      const snap = snapshotFromResources(set);
      const dangling = snapshotConsistency(snap);
      if (dangling.length > 0) throw new Error(`node ${node.id}: ${dangling.join("; ")}`);
      json = printJson(canonicalMessageJson(ConfigDumpSchema, snapshotConfigDump(node, snap)));
    }
    out.push({ file: `${kind}-${name}.json`, node, json });
  }
  return out;
}
