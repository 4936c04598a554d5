// Canonical proto JSON of a message: original (snake_case) field names, Any
// unpacked through the Envoy registry with "@type" printed first, defaults omitted.
import { toJson, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { envoyTypeRegistry } from "./type-registry.js";

function typeFirst(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(typeFirst);
  if (typeof v !== "object" || v === null) return v;
  const out: { [k: string]: JsonValue } = {};
  if ("@type" in v) out["@type"] = v["@type"] as JsonValue;
  for (const [k, x] of Object.entries(v)) if (k !== "@type") out[k] = typeFirst(x);
  return out;
}

export function canonicalMessageJson(schema: DescMessage, message: Message): JsonValue {
  return typeFirst(toJson(schema, message, { registry: envoyTypeRegistry, useProtoFieldName: true }));
}
