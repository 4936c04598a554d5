// What Envoy's admin does to a config before printing it: every field annotated
// `(udpa.annotations.sensitive)` — and everything below it — is redacted: strings
// and bytes become "[redacted]", other scalars are cleared; Any payloads are
// unpacked, redacted and packed again. So a file-based call credential's
// `secret_data` and a TLS private key print as "[redacted]" in /config_dump.
import { clone, getOption, hasOption, ScalarType, type DescField, type DescMessage, type Message, type Registry } from "@bufbuild/protobuf";
import { anyPack, anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { sensitive as sensitiveOption } from "../../gen/udpa/annotations/sensitive_pb.js";
import { envoyTypeRegistry } from "./type-registry.js";

/** Envoy's replacement text for a redacted string or bytes field. */
export const REDACTED = "[redacted]";
const REDACTED_BYTES = new TextEncoder().encode(REDACTED);
const ANY = "google.protobuf.Any";
const JSON_WKT = new Set(["google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"]);

function isSensitive(field: DescField): boolean {
  return hasOption(field, sensitiveOption) && getOption(field, sensitiveOption);
}

type Fields = Record<string, unknown>;

function redactScalar(field: DescField, value: unknown): unknown {
  const scalar = field.fieldKind === "scalar" || field.fieldKind === "list" ? field.scalar : undefined;
  if (scalar === ScalarType.STRING) return REDACTED;
  if (scalar === ScalarType.BYTES) return REDACTED_BYTES;
  return undefined;
}

/** A redacted JSON value (Struct, Value and ListValue are JSON in protobuf-es). */
function redactJson(v: unknown): unknown {
  if (typeof v === "string") return REDACTED;
  if (Array.isArray(v)) return v.map(redactJson);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactJson(x)]));
  return v;
}

function redactMessageValue(desc: DescMessage, value: unknown, sensitive: boolean, registry: Registry): unknown {
  if (desc.typeName === ANY) {
    const any = value as Any;
    const schema = registry.getMessage(any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1));
    const inner = schema ? anyUnpack(any, registry) : undefined;
    if (!schema || !inner) return value;
    redactInPlace(schema, inner, sensitive, registry);
    return anyPack(schema, inner);
  }
  if (JSON_WKT.has(desc.typeName)) return sensitive ? redactJson(value) : value;
  if (typeof value !== "object" || value === null || !("$typeName" in value)) {
    // A wrapper (google.protobuf.*Value), unboxed by protobuf-es.
    if (!sensitive) return value;
    return typeof value === "string" ? REDACTED : value instanceof Uint8Array ? REDACTED_BYTES : undefined;
  }
  redactInPlace(desc, value as Message, sensitive, registry);
  return value;
}

function redactInPlace(schema: DescMessage, msg: Message, ancestorSensitive: boolean, registry: Registry): void {
  const m = msg as unknown as Fields;
  for (const field of schema.fields) {
    const sensitive = ancestorSensitive || isSensitive(field);
    // Where the value lives: a oneof holds {case, value}.
    let get: () => unknown;
    let set: (v: unknown) => void;
    if (field.oneof) {
      const o = m[field.oneof.localName] as { case?: string; value?: unknown };
      if (o.case !== field.localName) continue;
      get = () => o.value;
      set = (v) => (m[field.oneof!.localName] = v === undefined ? { case: undefined } : { case: field.localName, value: v });
    } else {
      get = () => m[field.localName];
      set = (v) => (m[field.localName] = v);
    }
    const value = get();
    if (value === undefined) continue;
    switch (field.fieldKind) {
      case "message":
        set(redactMessageValue(field.message, value, sensitive, registry));
        break;
      case "list":
        if (field.listKind === "message") set((value as unknown[]).map((v) => redactMessageValue(field.message!, v, sensitive, registry)));
        else if (sensitive && (value as unknown[]).length > 0) {
          const r = redactScalar(field, undefined);
          set(r === undefined ? [] : (value as unknown[]).map(() => r));
        }
        break;
      case "map": {
        const entries = Object.entries(value as Fields);
        if (field.mapKind === "message") set(Object.fromEntries(entries.map(([k, v]) => [k, redactMessageValue(field.message!, v, sensitive, registry)])));
        else if (sensitive && entries.length > 0) {
          const r = redactScalar(field, undefined);
          set(r === undefined ? {} : Object.fromEntries(entries.map(([k]) => [k, r])));
        }
        break;
      }
      case "scalar":
      case "enum": {
        if (!sensitive) break;
        const isDefault = value === "" || value === 0 || value === 0n || value === false || (value instanceof Uint8Array && value.length === 0);
        if (isDefault && !field.oneof) break;
        const r = field.fieldKind === "scalar" ? redactScalar(field, value) : undefined;
        if (r !== undefined) set(r);
        else if (field.oneof) set(undefined);
        else set(field.fieldKind === "enum" ? 0 : field.scalar === ScalarType.BOOL ? false : typeof value === "bigint" ? 0n : 0);
        break;
      }
    }
  }
}

/** A copy of `msg` with its sensitive fields redacted as Envoy's admin prints them. */
export function redactSensitive<T extends Message>(schema: DescMessage, msg: T, registry: Registry = envoyTypeRegistry): T {
  const copy = clone(schema, msg) as T;
  redactInPlace(schema, copy, false, registry);
  return copy;
}
