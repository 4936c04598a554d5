// Strict parse of a rendered bootstrap's JSON into the Bootstrap message, with
// each google.protobuf.Any parsed once per distinct JSON text.
//
// Every render of a role carries the same typed_config payloads (TLS contexts, HCM,
// filters); only node fields and a few names change. Parsing an Any is most of
// fromJson's time (its payload is parsed, then encoded to bytes). Here every Any is
// taken out of the JSON (an empty object stands in its place), the rest is parsed
// with fromJson as before, and each Any is parsed on its own with fromJson (same
// registry, same strictness as inline) or, for a JSON text parsed before, taken
// from a bounded memo of (type URL, bytes). The result is the message fromJson gives
// for the whole JSON. Anything unusual returns undefined: the caller then parses the
// whole JSON the ordinary way (which also reports errors with their paths).
import { ScalarType, fromJson, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { BootstrapSchema, type Bootstrap } from "../../gen/envoy/config/bootstrap/v3/bootstrap_pb.js";
import { envoyTypeRegistry, fieldByJsonKey } from "../envoy/index.js";

type Step = DescField | number | string;

interface FoundAny {
  path: Step[];
  json: Record<string, JsonValue>;
}

/** Parsed Any payloads by their exact JSON text (bounded: cleared when full). */
const MAX_MEMO = 256;
const memo = new Map<string, { typeUrl: string; value: Uint8Array }>();

function isObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `json` with every non-empty Any object replaced by {} (copy on write); their places go to `found`. */
function stripAnys(schema: DescMessage, json: JsonValue, path: Step[], found: FoundAny[]): JsonValue {
  if (schema.typeName === AnySchema.typeName) {
    if (!isObject(json) || Object.keys(json).length === 0) return json; // left to fromJson
    found.push({ path: [...path], json });
    return {};
  }
  // Other well-known types have their own JSON forms and hold no Any.
  if (schema.typeName.startsWith("google.protobuf.") || !isObject(json)) return json;
  let out: Record<string, JsonValue> | undefined;
  for (const key of Object.keys(json)) {
    const f = fieldByJsonKey(schema, key);
    const v = json[key]!;
    if (!f || v === null) continue;
    let next: JsonValue = v;
    path.push(f);
    if (f.fieldKind === "message") next = stripAnys(f.message, v, path, found);
    else if (f.fieldKind === "list" && f.listKind === "message" && Array.isArray(v)) {
      let copy: JsonValue[] | undefined;
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        const item = stripAnys(f.message, v[i]!, path, found);
        path.pop();
        if (item !== v[i]) (copy ??= v.slice())[i] = item;
      }
      if (copy) next = copy;
    } else if (f.fieldKind === "map" && f.mapKind === "message" && f.mapKey === ScalarType.STRING && isObject(v)) {
      let copy: Record<string, JsonValue> | undefined;
      for (const k of Object.keys(v)) {
        path.push(k);
        const item = stripAnys(f.message, v[k]!, path, found);
        path.pop();
        if (item !== v[k]) (copy ??= { ...v })[k] = item;
      }
      if (copy) next = copy;
    }
    path.pop();
    if (next !== v) (out ??= { ...json })[key] = next;
  }
  return out ?? json;
}

/** The Any message object at `path` in a parsed message, or undefined. */
function anyAt(message: unknown, path: Step[]): Any | undefined {
  let cur: unknown = message;
  for (const step of path) {
    if (cur === undefined || cur === null) return undefined;
    if (typeof step === "number" || typeof step === "string") {
      cur = (cur as Record<string | number, unknown>)[step];
    } else if (step.oneof) {
      const o = (cur as Record<string, { case?: string; value?: unknown } | undefined>)[step.oneof.localName];
      cur = o?.case === step.localName ? o.value : undefined;
    } else {
      cur = (cur as Record<string, unknown>)[step.localName];
    }
  }
  const any = cur as Any | undefined;
  return any?.$typeName === AnySchema.typeName ? any : undefined;
}

function parseAny(json: Record<string, JsonValue>): { typeUrl: string; value: Uint8Array } {
  const text = JSON.stringify(json);
  let hit = memo.get(text);
  if (!hit) {
    const any = fromJson(AnySchema, json, { registry: envoyTypeRegistry });
    hit = { typeUrl: any.typeUrl, value: any.value };
    if (memo.size >= MAX_MEMO) memo.clear();
    memo.set(text, hit);
  }
  return hit;
}

/**
 * The Bootstrap fromJson(BootstrapSchema, json, { registry: envoyTypeRegistry }) gives, or
 * undefined when that parse fails (or anything else is unusual): parse the ordinary way then.
 */
export function parseBootstrapJson(json: unknown): Bootstrap | undefined {
  try {
    const found: FoundAny[] = [];
    const stripped = stripAnys(BootstrapSchema, json as JsonValue, [], found);
    const parsedAnys = found.map((f) => parseAny(f.json));
    const bootstrap = fromJson(BootstrapSchema, stripped, { registry: envoyTypeRegistry });
    for (let i = 0; i < found.length; i++) {
      const any = anyAt(bootstrap, found[i]!.path);
      if (!any || any.typeUrl !== "" || any.value.length !== 0) return undefined;
      any.typeUrl = parsedAnys[i]!.typeUrl;
      any.value = parsedAnys[i]!.value.slice();
    }
    return bootstrap;
  } catch {
    return undefined;
  }
}
