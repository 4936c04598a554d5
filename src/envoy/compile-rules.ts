// Compiles one PGV `(validate.rules)` FieldRules message into a checker closure,
// once per field descriptor (validate-message.ts caches the result), so that a
// large config is checked without decoding options or compiling regexes again.
//
// Messages follow protoc-gen-validate's wording without its leading "value".
import { isFieldSet, type DescMessage, type Message } from "@bufbuild/protobuf";
import type { Any, Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { isIP } from "node:net";
import * as pgv from "../../gen/validate/validate_pb.js";
import { KnownRegex, type FieldRules } from "../../gen/validate/validate_pb.js";
import type { ValidationIssue } from "./issue-path.js";

/** Checks one value (scalar, enum number, or message for WKT rules) at a path. */
export type ValueCheck = (value: unknown, path: string, out: ValidationIssue[]) => void;

/** What a compiled FieldRules does for a single value. */
export interface CompiledRules {
  /** The value is a message field that must be set (message.required, duration/timestamp/any required). */
  required: boolean;
  /** message.skip: do not recurse into the value. */
  skip: boolean;
  /** The check compares with the current time (timestamp lt_now, gt_now, within). */
  timeDependent?: boolean;
  /** Checks on the value itself (undefined: none). */
  check: ValueCheck | undefined;
  /** repeated/map rules, evaluated on the whole list or map. */
  repeated?: CompiledRepeated;
  map?: CompiledMap;
}

export interface CompiledRepeated {
  minItems?: bigint;
  maxItems?: bigint;
  unique: boolean;
  ignoreEmpty: boolean;
  items?: CompiledRules;
}

export interface CompiledMap {
  minPairs?: bigint;
  maxPairs?: bigint;
  ignoreEmpty: boolean;
  keys?: CompiledRules;
  values?: CompiledRules;
}

const regexCache = new Map<string, RegExp | null>();

/** RE2 pattern → JS RegExp, compiled once. Returns null when JS cannot express it. */
export function compilePattern(pattern: string): RegExp | null {
  const hit = regexCache.get(pattern);
  if (hit !== undefined) return hit;
  let source = pattern;
  let flags = "";
  // RE2 leading flag groups, e.g. (?i); \z is RE2's end of text.
  const m = /^\(\?([imsU]+)\)/.exec(source);
  if (m) {
    source = source.slice(m[0].length);
    for (const f of m[1] ?? "") if ("ims".includes(f) && !flags.includes(f)) flags += f;
  }
  source = source.replace(/\\z/g, "$").replace(/\\A/g, "^");
  let re: RegExp | null = null;
  for (const extra of ["u", ""]) {
    try {
      re = new RegExp(source, flags + extra);
      break;
    } catch {
      /* try without the unicode flag */
    }
  }
  regexCache.set(pattern, re);
  return re;
}

// Header name/value patterns as PGV defines them for well_known_regex.
const HEADER_NAME_STRICT = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
const HEADER_VALUE_STRICT = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const HOSTNAME_LABEL = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

function isHostname(s: string): boolean {
  const h = s.endsWith(".") ? s.slice(0, -1) : s;
  if (h.length === 0 || h.length > 253) return false;
  return h.split(".").every((l) => HOSTNAME_LABEL.test(l));
}

function isUri(s: string): boolean {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(s) && URL.canParse(s);
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff) n++;
    else {
      n++;
      i++; // a surrogate pair is one code point
    }
  }
  return n;
}

function has(schema: DescMessage, msg: Message, localName: string): boolean {
  const f = schema.fields.find((x) => x.localName === localName);
  return f !== undefined && isFieldSet(msg as never, f);
}

const quote = (s: string) => JSON.stringify(s);
const listOf = (xs: readonly unknown[], fmt: (x: never) => string = String) => `[${xs.map((x) => fmt(x as never)).join(", ")}]`;

type Num = number | bigint;

interface Bounds<T> {
  lt?: T;
  lte?: T;
  gt?: T;
  gte?: T;
}

/** PGV range semantics: gt<lt is an inside range, gt>=lt an exclusive (outside) range. */
function rangeCheck(b: Bounds<Num>, fmt: (v: Num) => string): ((v: Num) => string | undefined) | undefined {
  const lower = b.gt !== undefined ? { v: b.gt, excl: true } : b.gte !== undefined ? { v: b.gte, excl: false } : undefined;
  const upper = b.lt !== undefined ? { v: b.lt, excl: true } : b.lte !== undefined ? { v: b.lte, excl: false } : undefined;
  if (!lower && !upper) return undefined;
  const above = (v: Num) => (lower ? (lower.excl ? v > lower.v : v >= lower.v) : true);
  const below = (v: Num) => (upper ? (upper.excl ? v < upper.v : v <= upper.v) : true);
  if (lower && upper) {
    const text = `${lower.excl ? "(" : "["}${fmt(lower.v)}, ${fmt(upper.v)}${upper.excl ? ")" : "]"}`;
    if (upper.v > lower.v) return (v) => (above(v) && below(v) ? undefined : `must be inside range ${text}`);
    // Exclusive range: the value must lie outside [upper, lower].
    const outsideText = `${upper.excl ? "[" : "("}${fmt(upper.v)}, ${fmt(lower.v)}${lower.excl ? "]" : ")"}`;
    return (v) => (above(v) || below(v) ? undefined : `must be outside range ${outsideText}`);
  }
  if (lower) return (v) => (above(v) ? undefined : `must be greater than ${lower.excl ? "" : "or equal to "}${fmt(lower.v)}`);
  return (v) => (below(v) ? undefined : `must be less than ${upper!.excl ? "" : "or equal to "}${fmt(upper!.v)}`);
}

function compileNumeric(schema: DescMessage, r: Message & Record<string, unknown>): ValueCheck {
  const pick = (n: string) => (has(schema, r, n) ? (r[n] as Num) : undefined);
  const c = pick("const");
  const range = rangeCheck({ lt: pick("lt"), lte: pick("lte"), gt: pick("gt"), gte: pick("gte") }, String);
  const inList = (r.in as Num[] | undefined) ?? [];
  const notIn = (r.notIn as Num[] | undefined) ?? [];
  const ignoreEmpty = r.ignoreEmpty === true;
  return (raw, path, out) => {
    const v = raw as Num;
    if (ignoreEmpty && (v === 0 || v === 0n)) return;
    if (c !== undefined && v != c) out.push({ path, message: `must equal ${c}` });
    const bad = range?.(v);
    if (bad) out.push({ path, message: bad });
    if (inList.length > 0 && !inList.some((x) => x == v)) out.push({ path, message: `must be in list ${listOf(inList)}` });
    if (notIn.some((x) => x == v)) out.push({ path, message: `must not be in list ${listOf(notIn)}` });
  };
}

function compileString(schema: DescMessage, r: NonNullable<Extract<FieldRules["type"], { case: "string" }>["value"]>): ValueCheck {
  const h = (n: string) => has(schema, r, n);
  const checks: ((s: string) => string | undefined)[] = [];
  if (h("const")) checks.push((s) => (s === r.const ? undefined : `must equal ${quote(r.const)}`));
  if (h("len")) checks.push((s) => (BigInt(codePoints(s)) === r.len ? undefined : `length must be ${r.len} characters`));
  if (h("minLen")) checks.push((s) => (BigInt(codePoints(s)) >= r.minLen ? undefined : `length must be at least ${r.minLen} characters`));
  if (h("maxLen")) checks.push((s) => (BigInt(codePoints(s)) <= r.maxLen ? undefined : `length must be at most ${r.maxLen} characters`));
  const bytes = (s: string) => BigInt(Buffer.byteLength(s, "utf8"));
  if (h("lenBytes")) checks.push((s) => (bytes(s) === r.lenBytes ? undefined : `length must be ${r.lenBytes} bytes`));
  if (h("minBytes")) checks.push((s) => (bytes(s) >= r.minBytes ? undefined : `length must be at least ${r.minBytes} bytes`));
  if (h("maxBytes")) checks.push((s) => (bytes(s) <= r.maxBytes ? undefined : `length must be at most ${r.maxBytes} bytes`));
  if (h("pattern")) {
    const re = compilePattern(r.pattern);
    if (re) checks.push((s) => (re.test(s) ? undefined : `does not match regex pattern ${quote(r.pattern)}`));
  }
  if (h("prefix")) checks.push((s) => (s.startsWith(r.prefix) ? undefined : `does not have prefix ${quote(r.prefix)}`));
  if (h("suffix")) checks.push((s) => (s.endsWith(r.suffix) ? undefined : `does not have suffix ${quote(r.suffix)}`));
  if (h("contains")) checks.push((s) => (s.includes(r.contains) ? undefined : `does not contain substring ${quote(r.contains)}`));
  if (h("notContains")) checks.push((s) => (s.includes(r.notContains) ? `contains substring ${quote(r.notContains)}` : undefined));
  if (r.in.length > 0) checks.push((s) => (r.in.includes(s) ? undefined : `must be in list ${listOf(r.in, quote)}`));
  if (r.notIn.length > 0) checks.push((s) => (r.notIn.includes(s) ? `must not be in list ${listOf(r.notIn, quote)}` : undefined));
  const wk = r.wellKnown;
  switch (wk.case) {
    case "email":
      if (wk.value) checks.push((s) => (/^[^@\s]+@[^@\s]+$/.test(s) && isHostname(s.slice(s.lastIndexOf("@") + 1)) ? undefined : "must be a valid email address"));
      break;
    case "hostname":
      if (wk.value) checks.push((s) => (isHostname(s) ? undefined : "must be a valid hostname"));
      break;
    case "ip":
      if (wk.value) checks.push((s) => (isIP(s) !== 0 ? undefined : "must be a valid IP address"));
      break;
    case "ipv4":
      if (wk.value) checks.push((s) => (isIP(s) === 4 ? undefined : "must be a valid IPv4 address"));
      break;
    case "ipv6":
      if (wk.value) checks.push((s) => (isIP(s) === 6 ? undefined : "must be a valid IPv6 address"));
      break;
    case "address":
      if (wk.value) checks.push((s) => (isIP(s) !== 0 || isHostname(s) ? undefined : "must be a valid hostname or IP address"));
      break;
    case "uri":
      if (wk.value) checks.push((s) => (isUri(s) ? undefined : "must be a valid URI"));
      break;
    case "uriRef":
      if (wk.value) checks.push((s) => (URL.canParse(s, "http://x/") ? undefined : "must be a valid URI reference"));
      break;
    case "uuid":
      if (wk.value) checks.push((s) => (UUID.test(s) ? undefined : "must be a valid UUID"));
      break;
    case "wellKnownRegex": {
      const strict = r.strict; // proto2 default: true
      if (wk.value === KnownRegex.HTTP_HEADER_NAME) {
        const re = strict ? HEADER_NAME_STRICT : HEADER_LOOSE;
        checks.push((s) => (re.test(s) ? undefined : "must be a valid HTTP header name"));
      } else if (wk.value === KnownRegex.HTTP_HEADER_VALUE) {
        const re = strict ? HEADER_VALUE_STRICT : HEADER_LOOSE;
        checks.push((s) => (re.test(s) ? undefined : "must be a valid HTTP header value"));
      }
      break;
    }
    default:
      break;
  }
  const ignoreEmpty = r.ignoreEmpty;
  return (raw, path, out) => {
    const s = raw as string;
    if (ignoreEmpty && s === "") return;
    for (const c of checks) {
      const bad = c(s);
      if (bad) out.push({ path, message: bad });
    }
  };
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function indexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.length).indexOf(Buffer.from(needle));
}

function compileBytes(schema: DescMessage, r: NonNullable<Extract<FieldRules["type"], { case: "bytes" }>["value"]>): ValueCheck {
  const h = (n: string) => has(schema, r, n);
  const checks: ((b: Uint8Array) => string | undefined)[] = [];
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
  if (h("const")) checks.push((b) => (bytesEqual(b, r.const) ? undefined : `must equal 0x${hex(r.const)}`));
  if (h("len")) checks.push((b) => (BigInt(b.length) === r.len ? undefined : `length must be ${r.len} bytes`));
  if (h("minLen")) checks.push((b) => (BigInt(b.length) >= r.minLen ? undefined : `length must be at least ${r.minLen} bytes`));
  if (h("maxLen")) checks.push((b) => (BigInt(b.length) <= r.maxLen ? undefined : `length must be at most ${r.maxLen} bytes`));
  if (h("pattern")) {
    const re = compilePattern(r.pattern);
    if (re) checks.push((b) => (re.test(Buffer.from(b).toString("latin1")) ? undefined : `does not match regex pattern ${quote(r.pattern)}`));
  }
  if (h("prefix")) checks.push((b) => (b.length >= r.prefix.length && bytesEqual(b.subarray(0, r.prefix.length), r.prefix) ? undefined : `does not have prefix 0x${hex(r.prefix)}`));
  if (h("suffix")) checks.push((b) => (b.length >= r.suffix.length && bytesEqual(b.subarray(b.length - r.suffix.length), r.suffix) ? undefined : `does not have suffix 0x${hex(r.suffix)}`));
  if (h("contains")) checks.push((b) => (indexOfBytes(b, r.contains) >= 0 ? undefined : `does not contain 0x${hex(r.contains)}`));
  if (r.in.length > 0) checks.push((b) => (r.in.some((x) => bytesEqual(x, b)) ? undefined : "must be in the allowed list"));
  if (r.notIn.length > 0) checks.push((b) => (r.notIn.some((x) => bytesEqual(x, b)) ? "must not be in the forbidden list" : undefined));
  const ipLen = r.wellKnown.case === "ip" ? [4, 16] : r.wellKnown.case === "ipv4" ? [4] : r.wellKnown.case === "ipv6" ? [16] : undefined;
  if (ipLen && r.wellKnown.value) checks.push((b) => (ipLen.includes(b.length) ? undefined : `must be a valid ${r.wellKnown.case === "ip" ? "IP" : r.wellKnown.case === "ipv4" ? "IPv4" : "IPv6"} address in byte form`));
  const ignoreEmpty = has(schema, r, "ignoreEmpty") && (r as unknown as { ignoreEmpty: boolean }).ignoreEmpty;
  return (raw, path, out) => {
    const b = raw as Uint8Array;
    if (ignoreEmpty && b.length === 0) return;
    for (const c of checks) {
      const bad = c(b);
      if (bad) out.push({ path, message: bad });
    }
  };
}

function durationNanos(d: Duration | undefined): bigint {
  return d ? BigInt(d.seconds) * 1_000_000_000n + BigInt(d.nanos) : 0n;
}

/** Proto JSON form of a duration held as nanoseconds ("0s", "0.001s", "-1.5s"). */
export function formatNanos(n: Num): string {
  const v = BigInt(n);
  const neg = v < 0n;
  const abs = neg ? -v : v;
  const s = abs / 1_000_000_000n;
  const frac = abs % 1_000_000_000n;
  const fracText = frac === 0n ? "" : `.${frac.toString().padStart(9, "0").replace(/0+$/, "")}`;
  return `${neg ? "-" : ""}${s}${fracText}s`;
}

function formatTimestampNanos(n: Num): string {
  const v = BigInt(n);
  const ms = Number(v / 1_000_000n);
  return new Date(ms).toISOString();
}

function compileTime(
  schema: DescMessage,
  r: Message & Record<string, unknown>,
  toNanos: (m: unknown) => bigint,
  fmt: (n: Num) => string,
  isTimestamp: boolean,
): ValueCheck {
  const pick = (n: string) => (has(schema, r, n) ? toNanos(r[n]) : undefined);
  const c = pick("const");
  const range = rangeCheck({ lt: pick("lt"), lte: pick("lte"), gt: pick("gt"), gte: pick("gte") }, fmt);
  const inList = ((r.in as Duration[] | undefined) ?? []).map(durationNanos);
  const notIn = ((r.notIn as Duration[] | undefined) ?? []).map(durationNanos);
  const ltNow = isTimestamp && r.ltNow === true;
  const gtNow = isTimestamp && r.gtNow === true;
  const within = isTimestamp && has(schema, r, "within") ? durationNanos(r.within as Duration) : undefined;
  return (raw, path, out) => {
    const v = toNanos(raw);
    if (c !== undefined && v !== c) out.push({ path, message: `must equal ${fmt(c)}` });
    const bad = range?.(v);
    if (bad) out.push({ path, message: bad });
    if (inList.length > 0 && !inList.includes(v)) out.push({ path, message: `must be in list ${listOf(inList, fmt)}` });
    if (notIn.includes(v)) out.push({ path, message: `must not be in list ${listOf(notIn, fmt)}` });
    if (ltNow || gtNow || within !== undefined) {
      const now = BigInt(Date.now()) * 1_000_000n;
      if (ltNow && !(v < now)) out.push({ path, message: "must be less than now" });
      if (gtNow && !(v > now)) out.push({ path, message: "must be greater than now" });
      if (within !== undefined && (v - now > within || now - v > within)) out.push({ path, message: `must be within ${formatNanos(within)} of now` });
    }
  };
}

/** For wrapper-typed fields (google.protobuf.UInt32Value, …) PGV checks the inner value. */
function unwrap(check: ValueCheck): ValueCheck {
  return (v, path, out) => {
    if (v !== null && typeof v === "object" && "value" in v) check((v as { value: unknown }).value, path, out);
    else check(v, path, out);
  };
}

/**
 * Compiles FieldRules for a value. `definedEnumValues` is the value set of the
 * field's enum (for defined_only); `wrapped` is true for wrapper message fields.
 */
export function compileFieldRules(rules: FieldRules, definedEnumValues: ReadonlySet<number> | undefined, wrapped: boolean): CompiledRules {
  const out: CompiledRules = {
    required: rules.message?.required === true,
    skip: rules.message?.skip === true,
    check: undefined,
  };
  const t = rules.type;
  switch (t.case) {
    case undefined:
      break;
    case "float":
    case "double":
    case "int32":
    case "int64":
    case "uint32":
    case "uint64":
    case "sint32":
    case "sint64":
    case "fixed32":
    case "fixed64":
    case "sfixed32":
    case "sfixed64": {
      const c = compileNumeric(schemaOf(t.value), t.value as never);
      out.check = wrapped ? unwrap(c) : c;
      break;
    }
    case "bool": {
      const r = t.value;
      const c: ValueCheck | undefined = has(schemaOf(r), r, "const")
        ? (v, path, o) => {
            if (v !== r.const) o.push({ path, message: `must equal ${r.const}` });
          }
        : undefined;
      out.check = c && wrapped ? unwrap(c) : c;
      break;
    }
    case "string": {
      const c = compileString(schemaOf(t.value), t.value);
      out.check = wrapped ? unwrap(c) : c;
      break;
    }
    case "bytes": {
      const c = compileBytes(schemaOf(t.value), t.value);
      out.check = wrapped ? unwrap(c) : c;
      break;
    }
    case "enum": {
      const r = t.value;
      const constSet = has(schemaOf(r), r, "const");
      out.check = (raw, path, o) => {
        const v = raw as number;
        if (constSet && v !== r.const) o.push({ path, message: `must equal ${r.const}` });
        if (r.definedOnly && definedEnumValues && !definedEnumValues.has(v)) o.push({ path, message: `must be one of the defined enum values (got ${v})` });
        if (r.in.length > 0 && !r.in.includes(v)) o.push({ path, message: `must be in list ${listOf(r.in)}` });
        if (r.notIn.includes(v)) o.push({ path, message: `must not be in list ${listOf(r.notIn)}` });
      };
      break;
    }
    case "duration": {
      const r = t.value;
      out.required ||= r.required;
      out.check = compileTime(schemaOf(r), r as never, (m) => durationNanos(m as Duration), formatNanos, false);
      break;
    }
    case "timestamp": {
      const r = t.value;
      out.required ||= r.required;
      out.timeDependent = r.ltNow || r.gtNow || r.within !== undefined;
      const toNanos = (m: unknown) => {
        const ts = m as Timestamp | undefined;
        return ts ? BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos) : 0n;
      };
      out.check = compileTime(schemaOf(r), r as never, toNanos, formatTimestampNanos, true);
      break;
    }
    case "any": {
      const r = t.value;
      out.required ||= r.required;
      if (r.in.length > 0 || r.notIn.length > 0) {
        out.check = (raw, path, o) => {
          const url = (raw as Any).typeUrl;
          if (r.in.length > 0 && !r.in.includes(url)) o.push({ path, message: `type URL must be in list ${listOf(r.in, quote)}` });
          if (r.notIn.includes(url)) o.push({ path, message: `type URL must not be in list ${listOf(r.notIn, quote)}` });
        };
      }
      break;
    }
    case "repeated": {
      const r = t.value;
      const rs = schemaOf(r);
      out.repeated = {
        minItems: has(rs, r, "minItems") ? r.minItems : undefined,
        maxItems: has(rs, r, "maxItems") ? r.maxItems : undefined,
        unique: r.unique,
        ignoreEmpty: (r as unknown as { ignoreEmpty?: boolean }).ignoreEmpty === true,
        items: r.items ? compileFieldRules(r.items, definedEnumValues, wrapped) : undefined,
      };
      break;
    }
    case "map": {
      const r = t.value;
      const rs = schemaOf(r);
      out.map = {
        minPairs: has(rs, r, "minPairs") ? r.minPairs : undefined,
        maxPairs: has(rs, r, "maxPairs") ? r.maxPairs : undefined,
        ignoreEmpty: (r as unknown as { ignoreEmpty?: boolean }).ignoreEmpty === true,
        keys: r.keys ? compileFieldRules(r.keys, undefined, false) : undefined,
        values: r.values ? compileFieldRules(r.values, definedEnumValues, wrapped) : undefined,
      };
      break;
    }
  }
  return out;
}

// The rules messages' own descriptors, looked up from the generated file.
const rulesSchemas = new Map<string, DescMessage>(
  (Object.values(pgv) as unknown[])
    .filter((x): x is DescMessage => typeof x === "object" && x !== null && (x as DescMessage).kind === "message")
    .map((d) => [d.typeName, d] as const),
);

function schemaOf(m: Message): DescMessage {
  const s = rulesSchemas.get(m.$typeName);
  if (!s) throw new Error(`no descriptor for ${m.$typeName}`);
  return s;
}
