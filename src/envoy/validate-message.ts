// Evaluates the PGV `(validate.rules)` annotations carried by Envoy's protos on a
// parsed message, by reflection over the descriptors. Each message type is
// compiled once into a plan (which fields carry rules, which oneofs are required)
// and cached, so validating a large config dump costs one walk of the tree.
//
// The same walk optionally reports every message it visits (with its JSON path,
// Any payloads unpacked) so that cross-reference checks need no second pass.
import {
  getOption,
  hasOption,
  ScalarType,
  type DescField,
  type DescMessage,
  type DescOneof,
  type Message,
  type Registry,
} from "@bufbuild/protobuf";
import { anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { disabled as pgvDisabled, required as pgvRequired, rules as pgvRules } from "../../gen/validate/validate_pb.js";
import { compileFieldRules, type CompiledRules } from "./compile-rules.js";
import { indexPath, joinPath, keyPath, type ValidationIssue } from "./issue-path.js";
import { envoyTypeRegistry } from "./type-registry.js";

/** Called for every message in the tree (Any payloads unpacked), parents first. */
export type MessageVisitor = (schema: DescMessage, message: Message, path: string) => void;

interface FieldPlan {
  field: DescField;
  rules: CompiledRules | undefined;
}

interface MessagePlan {
  disabled: boolean;
  fields: FieldPlan[];
  requiredOneofs: DescOneof[];
}

const WRAPPERS = new Set(
  ["Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes"].map((t) => `google.protobuf.${t}Value`),
);
const ANY = "google.protobuf.Any";
const plans = new WeakMap<DescMessage, MessagePlan>();
const enumValueSets = new WeakMap<object, ReadonlySet<number>>();

function enumValues(field: DescField): ReadonlySet<number> | undefined {
  const e = field.enum;
  if (!e) return undefined;
  let s = enumValueSets.get(e);
  if (!s) {
    s = new Set(e.values.map((v) => v.number));
    enumValueSets.set(e, s);
  }
  return s;
}

function planFor(schema: DescMessage): MessagePlan {
  let plan = plans.get(schema);
  if (plan) return plan;
  const fields: FieldPlan[] = [];
  for (const field of schema.fields) {
    const rules = hasOption(field, pgvRules)
      ? compileFieldRules(getOption(field, pgvRules), enumValues(field), field.message !== undefined && WRAPPERS.has(field.message.typeName))
      : undefined;
    const holdsMessages = field.message !== undefined && !(field.message.typeName.startsWith("google.protobuf.") && field.message.typeName !== ANY);
    // Fields without rules that hold no messages to recurse into need no visit.
    if (rules || holdsMessages) fields.push({ field, rules });
  }
  plan = {
    disabled: hasOption(schema, pgvDisabled) && getOption(schema, pgvDisabled),
    fields,
    requiredOneofs: schema.oneofs.filter((o) => hasOption(o, pgvRequired) && getOption(o, pgvRequired)),
  };
  plans.set(schema, plan);
  return plan;
}

function typeNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
}

/** The walk's state: where issues go, which registry resolves Anys, who is told about messages. */
interface Walk {
  out: ValidationIssue[];
  registry: Registry;
  visit: MessageVisitor | undefined;
  /** Set when a rule compared with the current time (timestamp lt_now/gt_now/within). */
  timeDependent: boolean;
}

/**
 * What validating one Any payload produced, relative to the Any's own path:
 * issues, and the messages the visitor must be shown. Payloads repeat a lot (the
 * same TLS context on every cluster of a mesh, the same SDS call credentials in
 * every TLS context), so results are cached by type URL and payload bytes.
 */
interface PayloadResult {
  issues: ValidationIssue[];
  visits: { schema: DescMessage; message: Message; path: string }[];
}

const PAYLOAD_CACHE_ENTRIES = 512;
const PAYLOAD_CACHE_MAX_BYTES = 64 * 1024;
const payloadCaches = new WeakMap<Registry, Map<string, PayloadResult>>();

function relative(path: string, rel: string): string {
  if (rel === "") return path;
  if (path === "" || rel.startsWith("[")) return `${path}${rel}`;
  return `${path}.${rel}`;
}

function unpackAndWalk(w: Walk, any: Any, path: string): void {
  const inner = w.registry.getMessage(typeNameOf(any.typeUrl));
  if (!inner) {
    w.out.push({ path, message: `unknown @type ${JSON.stringify(any.typeUrl)}` });
    return;
  }
  let unpacked: Message | undefined;
  try {
    unpacked = anyUnpack(any, w.registry);
  } catch (err) {
    w.out.push({ path, message: `cannot unpack ${any.typeUrl}: ${(err as Error).message}` });
    return;
  }
  if (unpacked) walkValue(w, inner, unpacked, path);
}

function walkAny(w: Walk, any: Any, path: string): void {
  if (any.typeUrl === "") return; // an empty Any carries nothing (required is checked by the field rules)
  if (any.value.length > PAYLOAD_CACHE_MAX_BYTES) {
    unpackAndWalk(w, any, path);
    return;
  }
  let cache = payloadCaches.get(w.registry);
  if (!cache) {
    cache = new Map();
    payloadCaches.set(w.registry, cache);
  }
  const key = `${any.typeUrl}\u0000${Buffer.from(any.value.buffer, any.value.byteOffset, any.value.length).toString("latin1")}`;
  let result = cache.get(key);
  if (!result) {
    const visits: PayloadResult["visits"] = [];
    const sub: Walk = { out: [], registry: w.registry, visit: (schema, message, p) => visits.push({ schema, message, path: p }), timeDependent: false };
    unpackAndWalk(sub, any, "");
    result = { issues: sub.out, visits };
    if (sub.timeDependent) w.timeDependent = true; // checked against "now": never reuse
    else {
      if (cache.size >= PAYLOAD_CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
      cache.set(key, result);
    }
  }
  for (const i of result.issues) w.out.push({ path: relative(path, i.path), message: i.message });
  if (w.visit) for (const v of result.visits) w.visit(v.schema, v.message, relative(path, v.path));
}

function walkValue(w: Walk, desc: DescMessage, value: Message, path: string): void {
  if (desc.typeName === ANY) {
    walkAny(w, value as Any, path);
    return;
  }
  if (desc.typeName.startsWith("google.protobuf.")) return; // well-known types carry no rules
  walkMessage(w, desc, value, path);
}

function walkMessage(w: Walk, schema: DescMessage, msg: Message, path: string): void {
  w.visit?.(schema, msg, path);
  const plan = planFor(schema);
  const check = !plan.disabled;
  const m = msg as unknown as Record<string, unknown>;
  if (check) {
    for (const o of plan.requiredOneofs) {
      if ((m[o.localName] as { case: unknown }).case === undefined) {
        w.out.push({ path: joinPath(path, o.name), message: `is required: set one of ${o.fields.map((f) => f.name).join(", ")}` });
      }
    }
  }
  for (const { field: f, rules: fieldRules } of plan.fields) {
    const rules = check ? fieldRules : undefined;
    let value: unknown;
    if (f.oneof) {
      const o = m[f.oneof.localName] as { case: string | undefined; value: unknown };
      if (o.case !== f.localName) continue;
      value = o.value;
    } else {
      value = m[f.localName];
    }
    switch (f.fieldKind) {
      case "scalar":
      case "enum":
        if (value === undefined) continue; // proto3 `optional` left unset
        rules?.check?.(value, joinPath(path, f.name), w.out);
        break;
      case "message": {
        if (value === undefined) {
          if (rules?.required) w.out.push({ path: joinPath(path, f.name), message: "is required" });
          continue;
        }
        const p = joinPath(path, f.name);
        if (rules?.timeDependent) w.timeDependent = true;
        rules?.check?.(value, p, w.out);
        if (!rules?.skip) walkValue(w, f.message, value as Message, p);
        break;
      }
      case "list": {
        const list = value as unknown[];
        const p = joinPath(path, f.name);
        const rep = rules?.repeated;
        if (rep && !(rep.ignoreEmpty && list.length === 0)) {
          if (rep.minItems !== undefined && BigInt(list.length) < rep.minItems) w.out.push({ path: p, message: `must contain at least ${rep.minItems} item(s)` });
          if (rep.maxItems !== undefined && BigInt(list.length) > rep.maxItems) w.out.push({ path: p, message: `must contain no more than ${rep.maxItems} item(s)` });
          if (rep.unique && f.listKind !== "message") {
            const seen = new Set<string>();
            list.forEach((x, i) => {
              const k = x instanceof Uint8Array ? Buffer.from(x).toString("base64") : String(x);
              if (seen.has(k)) w.out.push({ path: indexPath(p, i), message: "repeated value must contain unique items" });
              seen.add(k);
            });
          }
        }
        const items = rep?.items;
        if (items?.timeDependent) w.timeDependent = true;
        if (items?.check) list.forEach((x, i) => items.check!(x, indexPath(p, i), w.out));
        if (f.listKind === "message" && !items?.skip) {
          const desc = f.message;
          for (let i = 0; i < list.length; i++) walkValue(w, desc, list[i] as Message, indexPath(p, i));
        }
        break;
      }
      case "map": {
        const map = value as Record<string, unknown>;
        const keys = Object.keys(map);
        const p = joinPath(path, f.name);
        const mr = rules?.map;
        if (mr?.values?.timeDependent) w.timeDependent = true;
        if (mr && !(mr.ignoreEmpty && keys.length === 0)) {
          if (mr.minPairs !== undefined && BigInt(keys.length) < mr.minPairs) w.out.push({ path: p, message: `must have at least ${mr.minPairs} pair(s)` });
          if (mr.maxPairs !== undefined && BigInt(keys.length) > mr.maxPairs) w.out.push({ path: p, message: `must have at most ${mr.maxPairs} pair(s)` });
          if (mr.keys?.check) for (const k of keys) mr.keys.check(mapKey(f, k), keyPath(p, k), w.out);
          if (mr.values?.check) for (const k of keys) mr.values.check(map[k], keyPath(p, k), w.out);
        }
        if (f.mapKind === "message" && !mr?.values?.skip) {
          for (const k of keys) walkValue(w, f.message, map[k] as Message, keyPath(p, k));
        }
        break;
      }
    }
  }
}

/** protobuf-es keeps map keys as strings; rules on integer or bool keys need the typed key. */
function mapKey(f: DescField, k: string): unknown {
  if (f.fieldKind !== "map") return k;
  switch (f.mapKey as number) {
    case ScalarType.STRING:
      return k;
    case ScalarType.BOOL:
      return k === "true";
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return BigInt(k);
    default:
      return Number(k);
  }
}

/**
 * Checks `msg` (of type `schema`) against the PGV rules of its type and of every
 * nested message, unpacking each Any through the registry. Paths use the
 * original (snake_case) proto field names, rooted at `rootPath`.
 */
export function validateTree(
  schema: DescMessage,
  msg: Message,
  options: { rootPath?: string; registry?: Registry; visit?: MessageVisitor; out?: ValidationIssue[] } = {},
): ValidationIssue[] {
  const w: Walk = { out: options.out ?? [], registry: options.registry ?? envoyTypeRegistry, visit: options.visit, timeDependent: false };
  walkValue(w, schema, msg, options.rootPath ?? "");
  return w.out;
}

/** PGV rules by reflection: every issue of `msg` and its nested messages. */
export function validateMessage(schema: DescMessage, msg: Message): ValidationIssue[] {
  return validateTree(schema, msg);
}
