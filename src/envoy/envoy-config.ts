// What an Envoy config file is (bootstrap, one resource, a list of resources, an
// admin config_dump), its strict parse into messages, and the resources it holds
// (type + name), which the cross-reference checks and the diff work on.
import { equals, isMessage, type DescMessage, type Message } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { ConfigDumpSchema } from "../../gen/envoy/admin/v3/config_dump_pb.js";
import { BootstrapSchema, type Bootstrap } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { DiscoveryResponseSchema } from "../../gen/envoy/service/discovery/v3/discovery_pb.js";
import { indexPath, joinPath, keyPath, type ValidationIssue } from "./issue-path.js";
import { ConfigSchemaError, parseMessageJson } from "./parse-message-json.js";
import { envoyTypeRegistry } from "./type-registry.js";

export type EnvoyConfigKind = "bootstrap" | "resource" | "resources" | "config_dump";

/** One parsed message of a config, with the JSON path its issues are rooted at. */
export interface ParsedRoot {
  schema: DescMessage;
  message: Message;
  path: string;
}

export interface ParsedEnvoyConfig {
  kind: EnvoyConfigKind;
  roots: ParsedRoot[];
}

/** A named xDS resource found in a config: `Cluster/outbound|8000||httpbin…`. */
export interface ConfigResource {
  /** Short type name: Cluster, Listener, RouteConfiguration, Secret, ClusterLoadAssignment, Bootstrap, … */
  type: string;
  name: string;
  /** `<type>/<name>`, made unique within one config. */
  key: string;
  schema: DescMessage;
  message: Message;
  /** Where it sits in the config (JSON path). */
  path: string;
  /**
   * Where it comes from: a bootstrap's own part (the Bootstrap minus its static
   * resources), a static resource (a bootstrap's, or a dump's static_* entries),
   * a dynamic one (xDS, or a plain resource list), or a dump's warming/draining state.
   */
  section: ConfigSection;
}

export type ConfigSection = "bootstrap" | "static" | "dynamic" | "warming" | "draining";

const DISCOVERY_RESPONSE_KEYS = new Set(["resources", "version_info", "versionInfo", "type_url", "typeUrl", "nonce", "canary", "control_plane", "controlPlane"]);

function typeNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
}

/**
 * meshkey's own snapshot form (`meshkey render`, `/debug/config_dump`):
 * `{node?, generation?, resources: {<type URL>: {version?, resources: [Any…]}}}`.
 * Returns the per-type lists, or undefined when `obj` is not that form.
 */
function snapshotTypeLists(obj: Record<string, unknown>): Array<[string, unknown[]]> | undefined {
  const res = obj.resources;
  if (typeof res !== "object" || res === null || Array.isArray(res)) return undefined;
  if (!Object.keys(obj).every((k) => k === "resources" || k === "node" || k === "generation")) return undefined;
  const lists: Array<[string, unknown[]]> = [];
  for (const [typeUrl, entry] of Object.entries(res)) {
    if (!typeUrl.startsWith("type.googleapis.com/")) return undefined;
    const items = (entry as { resources?: unknown } | null)?.resources;
    if (!Array.isArray(items)) return undefined;
    lists.push([typeUrl, items]);
  }
  return lists;
}

/** Which kind of config `input` (parsed JSON/YAML) looks like. */
export function detectConfigKind(input: unknown): EnvoyConfigKind {
  if (Array.isArray(input)) return "resources";
  if (typeof input !== "object" || input === null) {
    throw new ConfigSchemaError([{ path: "", message: `expected an object or an array, got ${input === null ? "null" : typeof input}` }]);
  }
  const obj = input as Record<string, unknown>;
  if (typeof obj["@type"] === "string") {
    return typeNameOf(obj["@type"]) === ConfigDumpSchema.typeName ? "config_dump" : "resource";
  }
  if ("configs" in obj) return "config_dump";
  const keys = Object.keys(obj);
  if ("resources" in obj && keys.every((k) => DISCOVERY_RESPONSE_KEYS.has(k))) return "resources";
  if (snapshotTypeLists(obj)) return "resources";
  return "bootstrap";
}

function kindOfMessage(m: Message): EnvoyConfigKind {
  switch (m.$typeName) {
    case BootstrapSchema.typeName:
      return "bootstrap";
    case ConfigDumpSchema.typeName:
      return "config_dump";
    case DiscoveryResponseSchema.typeName:
      return "resources";
    default:
      return "resource";
  }
}

function schemaOfMessage(m: Message): DescMessage {
  const s = envoyTypeRegistry.getMessage(m.$typeName);
  if (!s) throw new Error(`type ${m.$typeName} is not in the Envoy type registry`);
  return s;
}

/**
 * Parses a config strictly (proto3 JSON, unknown fields and unknown @types
 * rejected). `input` is parsed JSON/YAML, or already a message (or a list of
 * messages). Throws ConfigSchemaError with every problem and its path.
 */
export function parseEnvoyConfig(input: unknown, kind: EnvoyConfigKind | "auto" = "auto"): ParsedEnvoyConfig {
  if (isMessage(input)) return { kind: kind === "auto" ? kindOfMessage(input) : kind, roots: [{ schema: schemaOfMessage(input), message: input, path: "" }] };
  if (Array.isArray(input) && input.length > 0 && input.every((x) => isMessage(x))) {
    return { kind: "resources", roots: input.map((m, i) => ({ schema: schemaOfMessage(m as Message), message: m as Message, path: `[${i}]` })) };
  }
  const k = kind === "auto" ? detectConfigKind(input) : kind;
  switch (k) {
    case "bootstrap":
      return { kind: k, roots: [{ schema: BootstrapSchema, message: parseMessageJson(BootstrapSchema, input), path: "" }] };
    case "resource":
      return { kind: k, roots: [{ schema: AnySchema, message: parseMessageJson(AnySchema, input), path: "" }] };
    case "config_dump": {
      const isAny = typeof input === "object" && input !== null && "@type" in input;
      const schema = isAny ? AnySchema : ConfigDumpSchema;
      return { kind: k, roots: [{ schema, message: parseMessageJson(schema, input), path: "" }] };
    }
    case "resources": {
      const lists = Array.isArray(input)
        ? [["", input] as [string, unknown[]]]
        : typeof input === "object" && input !== null
          ? snapshotTypeLists(input as Record<string, unknown>)
          : undefined;
      if (!lists) {
        return { kind: k, roots: [{ schema: DiscoveryResponseSchema, message: parseMessageJson(DiscoveryResponseSchema, input), path: "" }] };
      }
      const roots: ParsedRoot[] = [];
      const issues: ValidationIssue[] = [];
      const items = lists.flatMap(([typeUrl, list]) =>
        list.map((item, i) => ({ item, path: typeUrl === "" ? `[${i}]` : indexPath(joinPath(keyPath("resources", typeUrl), "resources"), i) })),
      );
      items.forEach(({ item, path }) => {
        try {
          roots.push({ schema: AnySchema, message: parseMessageJson(AnySchema, item, { rootPath: path }), path });
        } catch (err) {
          if (!(err instanceof ConfigSchemaError)) throw err;
          issues.push(...err.issues);
        }
      });
      if (issues.length > 0) throw new ConfigSchemaError(issues);
      return { kind: k, roots };
    }
  }
}

/** The resource's name: `name`, or `cluster_name` for ClusterLoadAssignment. */
function resourceName(m: Message): string {
  const r = m as unknown as Record<string, unknown>;
  if (typeof r.name === "string") return r.name;
  if (typeof r.clusterName === "string") return r.clusterName;
  return "";
}

function shortType(typeName: string): string {
  return typeName.slice(typeName.lastIndexOf(".") + 1);
}

class ResourceSet {
  readonly list: ConfigResource[] = [];
  private readonly byKey = new Map<string, ConfigResource>();

  add(schema: DescMessage, message: Message, path: string, section: ConfigSection, name = resourceName(message)): void {
    const suffix = section === "warming" || section === "draining" ? ` (${section})` : "";
    const type = shortType(schema.typeName);
    let key = `${type}/${name}${suffix}`;
    const prev = this.byKey.get(key);
    if (prev) {
      if (prev.schema === schema && equals(schema, prev.message, message)) return; // e.g. a static cluster listed twice in a dump
      let n = 2;
      while (this.byKey.has(`${key} (${n})`)) n++;
      key = `${key} (${n})`;
    }
    const r: ConfigResource = { type, name, key, schema, message, path, section };
    this.byKey.set(key, r);
    this.list.push(r);
  }
}

function unpack(any: Any): { schema: DescMessage; message: Message } | undefined {
  const schema = envoyTypeRegistry.getMessage(typeNameOf(any.typeUrl));
  const message = schema ? anyUnpack(any, envoyTypeRegistry) : undefined;
  return schema && message ? { schema, message } : undefined;
}

function extractBootstrap(set: ResourceSet, b: Bootstrap, path: string, state: ConfigSection = "static"): void {
  const sr = b.staticResources;
  const srPath = joinPath(path, "static_resources");
  for (const [field, list] of [
    ["clusters", sr?.clusters ?? []],
    ["listeners", sr?.listeners ?? []],
    ["secrets", sr?.secrets ?? []],
  ] as const) {
    list.forEach((m, i) => set.add(schemaOfMessage(m), m, indexPath(joinPath(srPath, field), i), state === "dynamic" ? "static" : state));
  }
  // The rest of the bootstrap (node, admin, dynamic_resources, …) is one resource.
  const rest: Bootstrap = { ...b, staticResources: sr ? { ...sr, clusters: [], listeners: [], secrets: [] } : undefined };
  set.add(BootstrapSchema, rest, path, "bootstrap", b.node?.id || "bootstrap");
}

/** Walks an envoy.admin.v3 dump message: every Any is a resource, every nested admin message is walked. */
function extractDump(set: ResourceSet, schema: DescMessage, msg: Message, path: string, state: ConfigSection): void {
  const m = msg as unknown as Record<string, unknown>;
  for (const f of schema.fields) {
    if (f.fieldKind !== "message" && !(f.fieldKind === "list" && f.listKind === "message")) continue;
    if (f.name === "error_state") continue; // a rejected update, not configuration in use
    const desc = f.message!;
    const values: unknown[] = f.fieldKind === "list" ? (m[f.localName] as unknown[]) : m[f.localName] === undefined ? [] : [m[f.localName]];
    const fstate: ConfigSection = /warming/.test(f.name) ? "warming" : /draining/.test(f.name) ? "draining" : /^static_/.test(f.name) ? "static" : state;
    values.forEach((v, i) => {
      const p = f.fieldKind === "list" ? indexPath(joinPath(path, f.name), i) : joinPath(path, f.name);
      if (desc.typeName === BootstrapSchema.typeName) extractBootstrap(set, v as Bootstrap, p);
      else if (desc.typeName === AnySchema.typeName) extractFrom(set, AnySchema, v as Message, p, fstate);
      else if (desc.typeName.startsWith("envoy.admin.")) extractDump(set, desc, v as Message, p, fstate);
    });
  }
}

function extractFrom(set: ResourceSet, schema: DescMessage, msg: Message, path: string, state: ConfigSection): void {
  switch (schema.typeName) {
    case AnySchema.typeName: {
      const u = unpack(msg as Any);
      if (u) extractFrom(set, u.schema, u.message, path, state);
      return;
    }
    case BootstrapSchema.typeName:
      extractBootstrap(set, msg as Bootstrap, path, state);
      return;
    case DiscoveryResponseSchema.typeName:
      (msg as unknown as { resources: Any[] }).resources.forEach((r, i) => extractFrom(set, AnySchema, r, indexPath(joinPath(path, "resources"), i), state));
      return;
    case "envoy.service.discovery.v3.Resource": {
      const inner = (msg as unknown as { resource?: Any }).resource;
      if (inner) extractFrom(set, AnySchema, inner, joinPath(path, "resource"), state);
      return;
    }
    default:
      if (schema.typeName.startsWith("envoy.admin.")) extractDump(set, schema, msg, path, state);
      else set.add(schema, msg, path, state);
  }
}

/** Every named resource of a parsed config (Any unpacked, dumps flattened). */
export function configResources(parsed: ParsedEnvoyConfig): ConfigResource[] {
  const set = new ResourceSet();
  for (const r of parsed.roots) extractFrom(set, r.schema, r.message, r.path, "dynamic");
  return set.list;
}
