// Semantic diff of two Envoy configs (bootstraps, resource lists, config dumps,
// or messages): resources are matched by type and name, each is parsed into its
// message and printed as canonical proto JSON (Any unpacked, defaults omitted),
// then compared. Maps and lists whose elements all carry a unique `name` are
// compared by key, not by position.
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { configResources, parseEnvoyConfig, type ConfigResource } from "./envoy-config.js";
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

function resourceMap(input: unknown, side: string): Map<string, JsonValue> {
  let parsed;
  try {
    parsed = parseEnvoyConfig(input);
  } catch (err) {
    (err as Error).message = `config ${side}: ${(err as Error).message}`;
    throw err;
  }
  return new Map(configResources(parsed).map((r) => [r.key, canonicalJson(r)]));
}

/**
 * Compares two configs semantically. Inputs are parsed JSON/YAML or messages;
 * throws ConfigSchemaError (message prefixed with "config A"/"config B") when
 * either side is not a valid config.
 */
export function diffEnvoyConfigs(a: unknown, b: unknown): ConfigDiff {
  const ma = resourceMap(a, "A");
  const mb = resourceMap(b, "B");
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
