// Exports what meshkey serves each sidecar of `npm run bench -- ads`, for mesh
// generations A and B, as binary files the go-control-plane peer loads
// (bench/peers/go-control-plane/main.go), so that both servers push the same bytes.
//
// Only public APIs: translateForNode and snapshotFromResources (the resource bytes are
// the `Any` values meshkey's cache sends). One sidecar per service is translated in
// full per view (services of one namespace and port are alike; failing that, per service);
// the other sidecars of a view differ only in their pod IP, which appears in their
// listeners alone, so their listeners are the first one's with the IP replaced. That is
// checked: sampled sidecars are translated in full and must match byte for byte (else
// per-service views are tried, and then the export fails).
//
// File format (little endian), one file per generation:
//   "MKX1"
//   u32 blobs;  per blob:  u8 type (index in TYPES), u32 length, bytes (the resource message)
//   u32 groups; per group: u8 type, str version, u32 count, count × u32 blob index
//   u32 nodes;  per node:  str id, 4 × u32 group index (TYPES order)
// where str = u32 length + UTF-8. A group is one type's resources for the nodes that
// share them (a "view"); its version is a hash of its content, so a type whose content
// did not change from A to B keeps its version.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { ListenerSchema } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { parseMesh, resourceTypeRegistry, translateForNode } from "../../src/mesh/index.js";
import { snapshotFromResources } from "../../src/xds/index.js";
import { meshYaml, serviceOf, sidecarIp, sidecarNode, TRANSLATE, TYPE, TYPES } from "./ads-mesh.js";

type Blob = { type: number; bytes: Uint8Array };
type Resources = Map<string, Uint8Array>; // name → bytes, for one type

export interface ExportStats {
  blobs: number;
  blobBytes: number;
  groups: number;
  /** Bytes of the resources only one node has (its listeners), summed over all nodes. */
  perNodeBytes: number;
  /** Resources a synced sidecar holds, by type. */
  perSidecar: Record<string, number>;
  translateMs: number;
  /** Full translations made (one per view). */
  views: number;
}

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const ipPattern = (ip: string) => new RegExp(`(?<![0-9.])${ip.replaceAll(".", "\\.")}(?![0-9])`, "g");

/** What node `node` is served, by type, through meshkey's translation and cache packing. */
function servedBy(mesh: ReturnType<typeof parseMesh>, node: ReturnType<typeof sidecarNode>) {
  const set = translateForNode(mesh, node, TRANSLATE);
  const snap = snapshotFromResources(set);
  const byType = TYPES.map((t): Resources => {
    const m: Resources = new Map();
    for (const [name, r] of snap.get(t)?.resources ?? []) m.set(name, r.any.value);
    return m;
  });
  return { set, byType };
}

function sameResources(a: Resources, b: Resources): boolean {
  if (a.size !== b.size) return false;
  for (const [n, v] of a) {
    const w = b.get(n);
    if (!w || Buffer.compare(Buffer.from(v), Buffer.from(w)) !== 0) return false;
  }
  return true;
}

/** Writes the export of one generation for `sidecars` sidecars on `services` services. */
export function exportGeneration(file: string, services: number, sidecars: number, generation: "A" | "B", perService = false): ExportStats {
  const t0 = performance.now();
  const mesh = parseMesh(meshYaml(services, generation));
  const blobs: Blob[] = [];
  const blobIndex = new Map<string, number>();
  const groups: Array<{ type: number; version: string; blobs: number[] }> = [];
  const groupIndex = new Map<string, number>();
  let perNodeBytes = 0;

  const blob = (type: number, bytes: Uint8Array): number => {
    const key = `${type}:${sha(bytes)}`;
    let i = blobIndex.get(key);
    if (i === undefined) {
      i = blobs.length;
      blobs.push({ type, bytes });
      blobIndex.set(key, i);
    }
    return i;
  };
  const group = (type: number, res: Resources): number => {
    const ids = [...res.keys()].sort().map((n) => blob(type, res.get(n)!));
    const key = `${type}:${ids.join(",")}`;
    let g = groupIndex.get(key);
    if (g === undefined) {
      g = groups.length;
      groups.push({ type, version: sha(ids.map((i) => sha(blobs[i]!.bytes)).join(",")).slice(0, 16), blobs: ids });
      groupIndex.set(key, g);
    }
    return g;
  };

  // One full translation per view: the first sidecar of each class of services (namespace and
  // port), or, if the check below fails for that, of each service.
  const classOf = (i: number) => (perService ? serviceOf(i, services) : `${sidecarNode(i, services).metadata!["NAMESPACE"]}:${serviceOf(i, services) % 2}`);
  const views = new Map<string | number, ReturnType<typeof servedBy> & { ip: string; listenersJson: string; groups: number[]; first: number }>();
  const viewOf = (i: number) => {
    const key = classOf(i);
    let v = views.get(key);
    if (!v) {
      const served = servedBy(mesh, sidecarNode(i, services));
      const listenersJson = JSON.stringify(served.set.listeners.map((l) => toJson(ListenerSchema, l, { registry: resourceTypeRegistry })));
      v = { ...served, ip: sidecarIp(i), listenersJson, groups: TYPES.map((_, t) => group(t, served.byType[t]!)), first: i };
      views.set(key, v);
    }
    return v;
  };
  const listenerType = TYPES.indexOf(TYPE.listener);
  const derivedListeners = (i: number): Resources => {
    const v = viewOf(i);
    if (i === v.first) return v.byType[listenerType]!;
    const json = JSON.parse(v.listenersJson.replace(ipPattern(v.ip), sidecarIp(i))) as unknown[];
    const m: Resources = new Map();
    for (const j of json) {
      const l = fromJson(ListenerSchema, j as never, { registry: resourceTypeRegistry });
      m.set(l.name, toBinary(ListenerSchema, l));
    }
    return m;
  };
  // The check: these sidecars (other services of a class, other pods of a service) are translated
  // in full and must match what is exported for them.
  const samples = [10, 11, 12, services, services + 1, Math.floor(sidecars / 2), sidecars - 1].filter((i) => i < sidecars);
  for (const i of samples) {
    const v = viewOf(i);
    if (i === v.first) continue;
    const full = servedBy(mesh, sidecarNode(i, services)).byType;
    const bad = TYPES.filter((_, k) => !sameResources(full[k]!, k === listenerType ? derivedListeners(i) : v.byType[k]!));
    if (bad.length === 0) continue;
    if (!perService) return exportGeneration(file, services, sidecars, generation, true);
    throw new Error(`export: sidecar ${i} is served other ${bad.join(", ")} resources than the first sidecar of its service with its pod IP; the exporter's view assumption no longer holds`);
  }
  const nodes: Array<{ id: string; groups: number[] }> = [];
  for (let i = 0; i < sidecars; i++) {
    const v = viewOf(i);
    const listeners = derivedListeners(i);
    const groupsOf = [...v.groups];
    groupsOf[listenerType] = group(listenerType, listeners);
    if (i !== v.first) for (const b of listeners.values()) perNodeBytes += b.length;
    nodes.push({ id: sidecarNode(i, services).id, groups: groupsOf });
  }

  // Serialise.
  const parts: Buffer[] = [Buffer.from("MKX1")];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    parts.push(b);
  };
  const u8 = (n: number) => parts.push(Buffer.from([n]));
  const str = (s: string) => {
    const b = Buffer.from(s);
    u32(b.length);
    parts.push(b);
  };
  u32(blobs.length);
  for (const b of blobs) {
    u8(b.type);
    u32(b.bytes.length);
    parts.push(Buffer.from(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength));
  }
  u32(groups.length);
  for (const g of groups) {
    u8(g.type);
    str(g.version);
    u32(g.blobs.length);
    for (const i of g.blobs) u32(i);
  }
  u32(nodes.length);
  for (const n of nodes) {
    str(n.id);
    for (const g of n.groups) u32(g);
  }
  writeFileSync(file, Buffer.concat(parts));
  const first = viewOf(0);
  return {
    blobs: blobs.length,
    blobBytes: blobs.reduce((a, b) => a + b.bytes.length, 0),
    groups: groups.length,
    perNodeBytes,
    perSidecar: Object.fromEntries(TYPES.map((t, k) => [t.split(".").pop()!, first.byType[k]!.size])),
    translateMs: performance.now() - t0,
    views: views.size,
  };
}

// CLI: node --import tsx bench/xds/export-resources.ts <dir> <services> <sidecars>
if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, services, sidecars] = process.argv.slice(2);
  if (!dir || !services || !sidecars) {
    console.error("usage: export-resources.ts DIR SERVICES SIDECARS  (writes DIR/gen-A.bin and DIR/gen-B.bin)");
    process.exit(2);
  }
  for (const g of ["A", "B"] as const) console.log(g, JSON.stringify(exportGeneration(`${dir}/gen-${g}.bin`, Number(services), Number(sidecars), g)));
}
