// Strict proto3 JSON parsing (unknown fields rejected, every Any resolved through
// the registry) that reports failures with their JSON path.
//
// protobuf-es stops at the first error and does not say where it is; when it
// fails, this module walks the JSON alongside the descriptors and re-parses the
// smallest pieces to find every offending key, list item or map entry.
import { fromJson, type DescField, type DescMessage, type JsonValue, type Message, type Registry } from "@bufbuild/protobuf";
import { indexPath, joinPath, keyPath, type ValidationIssue } from "./issue-path.js";
import { envoyTypeRegistry } from "./type-registry.js";

const MAX_ISSUES = 1000;

/** A config that is not valid proto3 JSON for its type. */
export class ConfigSchemaError extends Error {
  override name = "ConfigSchemaError";
  constructor(readonly issues: ValidationIssue[]) {
    super(issues.map((i) => `${i.path === "" ? "(root)" : i.path}: ${i.message}`).join("\n"));
  }
}

const fieldIndex = new WeakMap<DescMessage, Map<string, DescField>>();

/** The field a proto JSON key names (its proto name or its lowerCamel JSON name). */
export function fieldByJsonKey(schema: DescMessage, key: string): DescField | undefined {
  let idx = fieldIndex.get(schema);
  if (!idx) {
    idx = new Map();
    for (const f of schema.fields) {
      idx.set(f.name, f);
      idx.set(f.jsonName, f);
    }
    fieldIndex.set(schema, idx);
  }
  return idx.get(key);
}

/** protobuf-es error text without its "cannot decode … from JSON:" preamble. */
function cleanMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const m = /^cannot decode (message|field|enum|oneof) (\S+) from JSON: (.*)$/s.exec(text);
  if (!m) return text;
  const [, what, name, rest] = m as unknown as [string, string, string, string];
  if (what === "message") return `invalid ${name.replace(/^google\.protobuf\./, "")}: ${rest}`;
  if (what === "enum") return `${rest} is not a value of enum ${name}`;
  if (what === "oneof") return rest;
  return rest;
}

function kindOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

function isPlainObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

interface Locate {
  registry: Registry;
  out: ValidationIssue[];
}

function tryParse(l: Locate, schema: DescMessage, json: JsonValue): unknown {
  try {
    fromJson(schema, json, { registry: l.registry });
    return undefined;
  } catch (err) {
    return err;
  }
}

function push(l: Locate, path: string, message: string): void {
  if (l.out.length < MAX_ISSUES) l.out.push({ path, message });
}

/** Finds why `json` does not parse as `schema`; pushes one issue per offending place. */
function locate(l: Locate, schema: DescMessage, json: JsonValue, path: string): void {
  if (l.out.length >= MAX_ISSUES) return;
  const err = tryParse(l, schema, json);
  if (err === undefined) return;
  const before = l.out.length;
  if (schema.typeName === "google.protobuf.Any") {
    locateAny(l, json, path);
  } else if (schema.typeName.startsWith("google.protobuf.")) {
    push(l, path, cleanMessage(err)); // well-known types have their own JSON forms
  } else if (!isPlainObject(json)) {
    push(l, path, `expected an object (${schema.typeName}), got ${kindOf(json)}`);
  } else {
    for (const [key, value] of Object.entries(json)) locateField(l, schema, key, value, path);
  }
  if (l.out.length === before) push(l, path, cleanMessage(err)); // e.g. a oneof set twice
}

function locateAny(l: Locate, json: JsonValue, path: string): void {
  if (!isPlainObject(json)) {
    push(l, path, `expected an object with "@type", got ${kindOf(json)}`);
    return;
  }
  const url = json["@type"];
  if (typeof url !== "string" || url === "") {
    push(l, joinPath(path, "@type"), `Any is missing its "@type"`);
    return;
  }
  const inner = l.registry.getMessage(url.slice(url.lastIndexOf("/") + 1));
  if (!inner) {
    push(l, path, `unknown @type ${JSON.stringify(url)}`);
    return;
  }
  if (inner.typeName.startsWith("google.protobuf.")) {
    locate(l, inner, json.value ?? null, joinPath(path, "value"));
    return;
  }
  const { "@type": _ignored, ...rest } = json;
  locate(l, inner, rest, path);
}

function locateField(l: Locate, schema: DescMessage, key: string, value: JsonValue, path: string): void {
  const f = fieldByJsonKey(schema, key);
  if (!f) {
    push(l, joinPath(path, key), `unknown field ${JSON.stringify(key)} in ${schema.typeName}`);
    return;
  }
  const p = joinPath(path, f.name);
  const err = tryParse(l, schema, { [key]: value });
  if (err === undefined || value === null) return;
  switch (f.fieldKind) {
    case "message":
      locate(l, f.message, value, p);
      return;
    case "list":
      if (!Array.isArray(value)) break;
      value.forEach((item, i) => {
        if (f.listKind === "message") locate(l, f.message, item, indexPath(p, i));
        else {
          const e = tryParse(l, schema, { [key]: [item] });
          if (e !== undefined) push(l, indexPath(p, i), cleanMessage(e));
        }
      });
      return;
    case "map":
      if (!isPlainObject(value)) break;
      for (const [k, v] of Object.entries(value)) {
        if (f.mapKind === "message") locate(l, f.message, v, keyPath(p, k));
        else {
          const e = tryParse(l, schema, { [key]: { [k]: v } });
          if (e !== undefined) push(l, keyPath(p, k), cleanMessage(e));
        }
      }
      return;
    default:
      break;
  }
  push(l, p, cleanMessage(err));
}

/**
 * Parses `json` as `schema` strictly. Throws ConfigSchemaError listing every
 * problem with its path (rooted at `rootPath`).
 */
export function parseMessageJson<Desc extends DescMessage>(
  schema: Desc,
  json: unknown,
  options: { rootPath?: string; registry?: Registry } = {},
): Message {
  const registry = options.registry ?? envoyTypeRegistry;
  try {
    return fromJson(schema, json as JsonValue, { registry }) as Message;
  } catch (err) {
    const l: Locate = { registry, out: [] };
    locate(l, schema, json as JsonValue, options.rootPath ?? "");
    if (l.out.length === 0) l.out.push({ path: options.rootPath ?? "", message: cleanMessage(err) });
    throw new ConfigSchemaError(l.out);
  }
}
