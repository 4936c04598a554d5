// Semantic diff of two Envoy configs (bootstraps, resource lists, config dumps,
// or messages): resources are matched by type and name, each is parsed into its
// message and printed as canonical proto JSON (Any unpacked, defaults omitted),
// then compared. Maps and lists whose elements all carry a unique `name` are
// compared by key, not by position.
import { clone, create, equals, toJson, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { BootstrapSchema, type Bootstrap } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { LocalitySchema } from "../../gen/envoy/config/core/v3/base_pb.js";
import { HealthStatus } from "../../gen/envoy/config/core/v3/health_check_pb.js";
import { Endpoint_HealthCheckConfigSchema } from "../../gen/envoy/config/endpoint/v3/endpoint_components_pb.js";
import {
  ClusterLoadAssignment_PolicySchema,
  ClusterLoadAssignmentSchema,
  type ClusterLoadAssignment,
} from "../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import { SecretSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import { configResources, parseEnvoyConfig, type ConfigResource, type EnvoyConfigKind } from "./envoy-config.js";
import { redactSensitive } from "./redact-sensitive.js";
import { indexPath, joinPath } from "./issue-path.js";
import { envoyTypeRegistry } from "./type-registry.js";

/** One changed path of one resource. `a`/`b` are absent where that side has nothing. */
export interface DiffChange {
  /** `<type>/<name>`, e.g. `Cluster/outbound|8000||httpbin.default.svc.cluster.local`. */
  resource: string;
  /** Path inside the resource ("" for the whole resource). */
  path: string;
  a?: JsonValue;
  b?: JsonValue;
}

export interface ConfigDiff {
  same: boolean;
  changes: DiffChange[];
}

/** A resource as canonical proto JSON (original field names). */
export function canonicalJson(r: Pick<ConfigResource, "schema" | "message">): JsonValue {
  return toJson(r.schema, r.message, { registry: envoyTypeRegistry, useProtoFieldName: true });
}

function isObject(v: JsonValue | undefined): v is { [k: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The element names when every element is an object with a distinct string `name`. */
function names(list: JsonValue[]): string[] | undefined {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const x of list) {
    if (!isObject(x) || typeof x.name !== "string" || seen.has(x.name)) return undefined;
    seen.add(x.name);
    out.push(x.name);
  }
  return out;
}

function deepEqual(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

/**
 * Named lists whose order Envoy acts on: filters run in order, routes match
 * first-wins. For these a reordering is a change even when every element is equal.
 */
const ORDER_SIGNIFICANT_FIELDS = new Set(["http_filters", "filters", "listener_filters", "routes", "upstream_http_filters"]);

function diffValues(
  resource: string,
  path: string,
  a: JsonValue | undefined,
  b: JsonValue | undefined,
  out: DiffChange[],
  field?: string,
): void {
  if (deepEqual(a, b)) return;
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) diffValues(resource, joinPath(path, k), a[k], b[k], out, k);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const na = names(a);
    const nb = names(b);
    if (na && nb) {
      if (field !== undefined && ORDER_SIGNIFICANT_FIELDS.has(field)) {
        const common = (xs: string[], ys: string[]) => xs.filter((x) => ys.includes(x));
        const orderA = common(na, nb);
        const orderB = common(nb, na);
        if (orderA.join("\u0000") !== orderB.join("\u0000")) out.push({ resource, path: `${path}(order)`, a: orderA, b: orderB });
      }
      const byA = new Map(na.map((n, i) => [n, a[i]]));
      const byB = new Map(nb.map((n, i) => [n, b[i]]));
      const all = [...new Set([...na, ...nb])].sort();
      for (const n of all) diffValues(resource, `${path}[name=${n}]`, byA.get(n), byB.get(n), out);
      return;
    }
    for (let i = 0; i < Math.max(a.length, b.length); i++) diffValues(resource, indexPath(path, i), a[i], b[i], out);
    return;
  }
  const change: DiffChange = { resource, path };
  if (a !== undefined) change.a = a;
  if (b !== undefined) change.b = b;
  out.push(change);
}

function parseSide(input: unknown, side: string): { kind: EnvoyConfigKind; resources: ConfigResource[] } {
  let parsed;
  try {
    parsed = parseEnvoyConfig(input);
  } catch (err) {
    (err as Error).message = `config ${side}: ${(err as Error).message}`;
    throw err;
  }
  return { kind: parsed.kind, resources: configResources(parsed) };
}

const DATA_SOURCE = "envoy.config.core.v3.DataSource";

/** Clears every DataSource below `msg` (certificate and key material), in place. */
function clearDataSources(schema: DescMessage, msg: Message): void {
  const m = msg as unknown as Record<string, unknown>;
  for (const f of schema.fields) {
    if (f.fieldKind !== "message" && !(f.fieldKind === "list" && f.listKind === "message")) continue;
    const inOneof = f.oneof !== undefined;
    const holder = inOneof ? (m[f.oneof!.localName] as { case?: string; value?: unknown }) : undefined;
    if (holder && holder.case !== f.localName) continue;
    const value = holder ? holder.value : m[f.localName];
    if (value === undefined) continue;
    if (f.message!.typeName === DATA_SOURCE) {
      if (holder) m[f.oneof!.localName] = { case: undefined };
      else m[f.localName] = f.fieldKind === "list" ? [] : undefined;
      continue;
    }
    for (const v of f.fieldKind === "list" ? (value as unknown[]) : [value]) {
      if (typeof v === "object" && v !== null && "$typeName" in v) clearDataSources(f.message!, v as Message);
    }
  }
}

/**
 * Envoy's own view of endpoints (/config_dump?include_eds) spells out defaults a
 * ClusterLoadAssignment leaves unset: an empty locality (locality weight 0), an
 * empty health check config, HEALTHY (for a host without health checking), host
 * weight 1, overprovisioning factor 140. Both sides drop them before comparing.
 */
function withoutEndpointDefaults(cla: ClusterLoadAssignment): ClusterLoadAssignment {
  const c = clone(ClusterLoadAssignmentSchema, cla);
  for (const group of c.endpoints) {
    if (group.locality && equals(LocalitySchema, group.locality, create(LocalitySchema))) group.locality = undefined;
    if (group.loadBalancingWeight === 0) group.loadBalancingWeight = undefined;
    for (const e of group.lbEndpoints) {
      if (e.healthStatus === HealthStatus.HEALTHY) e.healthStatus = HealthStatus.UNKNOWN;
      if (e.loadBalancingWeight === 1) e.loadBalancingWeight = undefined;
      const hc = e.hostIdentifier.case === "endpoint" ? e.hostIdentifier.value.healthCheckConfig : undefined;
      if (hc && equals(Endpoint_HealthCheckConfigSchema, hc, create(Endpoint_HealthCheckConfigSchema))) (e.hostIdentifier.value as { healthCheckConfig?: unknown }).healthCheckConfig = undefined;
    }
  }
  if (c.policy?.overprovisioningFactor === 140) c.policy.overprovisioningFactor = undefined;
  if (c.policy && equals(ClusterLoadAssignment_PolicySchema, c.policy, create(ClusterLoadAssignment_PolicySchema))) c.policy = undefined;
  return c;
}

/**
 * A resource as compared against a live Envoy's dump: sensitive fields redacted
 * (a dump prints them so), a Secret without its key material, endpoints without
 * the defaults Envoy spells out, a Bootstrap reduced to its node (id, cluster,
 * metadata, locality; Envoy adds user_agent_* and extensions itself).
 */
function liveComparable(r: ConfigResource): JsonValue {
  let message = redactSensitive(r.schema, r.message);
  switch (r.schema.typeName) {
    case BootstrapSchema.typeName: {
      const node = (message as Bootstrap).node;
      message = create(BootstrapSchema, node ? { node: { id: node.id, cluster: node.cluster, metadata: node.metadata, locality: node.locality } } : {});
      break;
    }
    case SecretSchema.typeName:
      clearDataSources(r.schema, message);
      break;
    case ClusterLoadAssignmentSchema.typeName:
      message = withoutEndpointDefaults(message as ClusterLoadAssignment);
      break;
  }
  return canonicalJson({ schema: r.schema, message });
}

/**
 * Which resources of two configs are compared, and as what. Two configs without
 * a config dump are compared whole. With a config dump on either side (a live
 * Envoy's /config_dump, or `meshkey render`'s), only what the mesh decides counts:
 * - last_updated and version_info (never compared), warming and draining entries,
 *   and rejected updates (error_state) of a dump are left out;
 * - a dump's static resources (its bootstrap's: the xds-grpc cluster and its
 *   endpoints) are compared only when both sides have them;
 * - endpoints (ClusterLoadAssignment) are compared only when both sides list
 *   some: /config_dump without ?include_eds lists none;
 * - each resource is made comparable with liveComparable.
 */
function comparedResources(a: { kind: EnvoyConfigKind; resources: ConfigResource[] }, b: { kind: EnvoyConfigKind; resources: ConfigResource[] }) {
  const plain = (side: { resources: ConfigResource[] }) => new Map(side.resources.map((r) => [r.key, canonicalJson(r)]));
  if (a.kind !== "config_dump" && b.kind !== "config_dump") return [plain(a), plain(b)] as const;
  const inUse = (side: { kind: EnvoyConfigKind; resources: ConfigResource[] }) =>
    side.kind === "config_dump" ? side.resources.filter((r) => r.section !== "warming" && r.section !== "draining") : side.resources;
  let ra = inUse(a);
  let rb = inUse(b);
  const keysA = new Set(ra.map((r) => r.key));
  const keysB = new Set(rb.map((r) => r.key));
  const oneSidedStatic = (r: ConfigResource, kind: EnvoyConfigKind, other: Set<string>) => kind === "config_dump" && r.section === "static" && !other.has(r.key);
  ra = ra.filter((r) => !oneSidedStatic(r, a.kind, keysB));
  rb = rb.filter((r) => !oneSidedStatic(r, b.kind, keysA));
  const eds = (rs: ConfigResource[]) => rs.some((r) => r.schema.typeName === ClusterLoadAssignmentSchema.typeName);
  if (!eds(ra) || !eds(rb)) {
    ra = ra.filter((r) => r.schema.typeName !== ClusterLoadAssignmentSchema.typeName);
    rb = rb.filter((r) => r.schema.typeName !== ClusterLoadAssignmentSchema.typeName);
  }
  const comparable = (rs: ConfigResource[]) => new Map(rs.map((r) => [r.key, liveComparable(r)]));
  return [comparable(ra), comparable(rb)] as const;
}

/**
 * Compares two configs semantically. Inputs are parsed JSON/YAML or messages;
 * throws ConfigSchemaError (message prefixed with "config A"/"config B") when
 * either side is not a valid config. With a config dump on either side, only
 * what the mesh decides is compared (see comparedResources).
 */
export function diffEnvoyConfigs(a: unknown, b: unknown): ConfigDiff {
  const [ma, mb] = comparedResources(parseSide(a, "A"), parseSide(b, "B"));
  const keys = [...new Set([...ma.keys(), ...mb.keys()])].sort();
  const changes: DiffChange[] = [];
  for (const k of keys) diffValues(k, "", ma.get(k), mb.get(k), changes);
  return { same: changes.length === 0, changes };
}

const MAX_VALUE = 160;

function show(v: JsonValue | undefined): string {
  if (v === undefined) return "(absent)";
  const s = JSON.stringify(v);
  return s.length > MAX_VALUE ? `${s.slice(0, MAX_VALUE - 1)}…` : s;
}

/** One line per changed path, grouped under a line naming each resource. */
export function formatDiff(d: ConfigDiff): string {
  if (d.same) return "no differences";
  const lines: string[] = [];
  let current: string | undefined;
  for (const c of d.changes) {
    if (c.path === "") {
      lines.push(`${c.resource}: ${c.a === undefined ? "only in B" : c.b === undefined ? "only in A" : `${show(c.a)} → ${show(c.b)}`}`);
      current = undefined;
      continue;
    }
    if (c.resource !== current) {
      lines.push(c.resource);
      current = c.resource;
    }
    lines.push(`  ${c.path}: ${show(c.a)} → ${show(c.b)}`);
  }
  return lines.join("\n");
}
