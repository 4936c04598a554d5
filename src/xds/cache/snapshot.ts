// An immutable snapshot of one node's resources, encoded once: each resource keeps
// its packed Any (shared by every stream that sends it) and a version that is a hash
// of its deterministic encoding; a type's version is a hash over its resources.
import { createHash } from "node:crypto";
import { create, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";

export interface CachedResource {
  readonly name: string;
  readonly typeUrl: string;
  /** Hash of the encoded resource: the delta protocol's per-resource version. */
  readonly version: string;
  /** The resource packed once; the same object goes into every response. */
  readonly any: Any;
  /**
   * `any` as it goes on the wire inside a response: its length, then its encoding (the `value`
   * of `any` is a view into these bytes, not a copy). Responses carry it verbatim (see
   * packed-resources.ts), so a thousand streams sending the same resource never re-encode it.
   */
  readonly wire: Uint8Array;
  /** Resources of other types this one needs (an EDS cluster's load assignment, a listener's routes). */
  readonly references: readonly ResourceRef[];
}

export interface ResourceRef {
  typeUrl: string;
  name: string;
}

export interface TypeSnapshot {
  readonly version: string;
  readonly resources: ReadonlyMap<string, CachedResource>;
}

export interface Snapshot {
  readonly types: ReadonlyMap<string, TypeSnapshot>;
  get(typeUrl: string): TypeSnapshot | undefined;
}

function hash(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("base64url").slice(0, 16);
}

/** Packs one resource (deterministic encoding) and computes its version. */
export function cacheResource<Desc extends DescMessage>(
  schema: Desc,
  name: string,
  message: MessageShape<Desc>,
  references: readonly ResourceRef[] = [],
): CachedResource {
  const value = toBinary(schema, message);
  const typeUrl = `type.googleapis.com/${schema.typeName}`;
  const { any, wire } = packAny(typeUrl, value);
  return { name, typeUrl, version: hash(value), any, wire, references };
}

/** An Any and its length-prefixed encoding, the Any's value viewing the encoding's last bytes. */
export function packAny(typeUrl: string, value: Uint8Array): { any: Any; wire: Uint8Array } {
  const body = toBinary(AnySchema, create(AnySchema, { typeUrl, value }));
  const wire = new BinaryWriter().uint32(body.length).raw(body).finish();
  // The value is the Any's last field: its bytes end the encoding.
  const any = create(AnySchema, { typeUrl, value: wire.subarray(wire.length - value.length) });
  return { any, wire };
}

/** Builds a snapshot from already cached resources, grouped by their type URL. */
export function createSnapshot(resources: Iterable<CachedResource>, typeUrls: Iterable<string> = []): Snapshot {
  const grouped = new Map<string, Map<string, CachedResource>>();
  for (const t of typeUrls) grouped.set(t, new Map());
  for (const r of resources) {
    let m = grouped.get(r.typeUrl);
    if (!m) grouped.set(r.typeUrl, (m = new Map()));
    if (m.has(r.name)) throw new Error(`duplicate ${r.typeUrl} resource "${r.name}"`);
    m.set(r.name, r);
  }
  const types = new Map<string, TypeSnapshot>();
  for (const [typeUrl, m] of grouped) {
    const sorted = new Map([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const h = createHash("sha256");
    for (const r of sorted.values()) h.update(r.name).update("\0").update(r.version).update("\0");
    types.set(typeUrl, { version: h.digest("base64url").slice(0, 12), resources: sorted });
  }
  return { types, get: (t) => types.get(t) };
}

/** One type's resources, sorted by name, with the version createSnapshot gives them. */
export interface SortedTypeSnapshot extends TypeSnapshot {
  /** Names in order. */
  readonly names: readonly string[];
  /** What the version hashes: `name\0version\0` per resource, in order; entry i starts at offsets[i]. */
  readonly digestInput: Buffer;
  readonly offsets: readonly number[];
}

const byResourceName = (a: CachedResource, b: CachedResource) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** A type snapshot from cached resources of one type (any order; names unique). */
export function typeSnapshot(resources: readonly CachedResource[]): SortedTypeSnapshot {
  const sorted = [...resources].sort(byResourceName);
  const map = new Map<string, CachedResource>();
  const parts: Buffer[] = [];
  const offsets: number[] = [0];
  let at = 0;
  for (const r of sorted) {
    if (map.has(r.name)) throw new Error(`duplicate ${r.typeUrl} resource "${r.name}"`);
    map.set(r.name, r);
    const part = Buffer.from(`${r.name}\0${r.version}\0`);
    parts.push(part);
    offsets.push((at += part.length));
  }
  const digestInput = Buffer.concat(parts);
  return {
    version: createHash("sha256").update(digestInput).digest("base64url").slice(0, 12),
    resources: map,
    names: sorted.map((r) => r.name),
    digestInput,
    offsets,
  };
}

const lowerBound = (names: readonly string[], name: string): number => {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (names[mid]! < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
};

/**
 * A read-only view of two disjoint sorted resource maps as one, in name order. The
 * shared half is not copied: nodes that share it hold only their own few resources.
 */
class MergedResources implements ReadonlyMap<string, CachedResource> {
  constructor(
    private readonly shared: SortedTypeSnapshot,
    private readonly own: SortedTypeSnapshot,
    /** Where each own resource goes among the shared ones. */
    private readonly at: readonly number[],
  ) {}
  get size() {
    return this.shared.resources.size + this.own.resources.size;
  }
  get(name: string) {
    return this.own.resources.get(name) ?? this.shared.resources.get(name);
  }
  has(name: string) {
    return this.own.resources.has(name) || this.shared.resources.has(name);
  }
  private *merged(): Generator<CachedResource> {
    const { names, resources } = this.shared;
    let i = 0;
    for (let k = 0; k < this.own.names.length; k++) {
      for (; i < this.at[k]!; i++) yield resources.get(names[i]!)!;
      yield this.own.resources.get(this.own.names[k]!)!;
    }
    for (; i < names.length; i++) yield resources.get(names[i]!)!;
  }
  *values(): MapIterator<CachedResource> {
    yield* this.merged();
  }
  *keys(): MapIterator<string> {
    for (const r of this.merged()) yield r.name;
  }
  *entries(): MapIterator<[string, CachedResource]> {
    for (const r of this.merged()) yield [r.name, r];
  }
  [Symbol.iterator]() {
    return this.entries();
  }
  forEach(fn: (value: CachedResource, key: string, map: ReadonlyMap<string, CachedResource>) => void) {
    for (const r of this.merged()) fn(r, r.name, this);
  }
}

/**
 * `shared` and `own` as one type snapshot, with the version createSnapshot would give the
 * union (hashed from the shared digest input, not re-walked). Names must not overlap.
 */
export function mergeTypeSnapshots(shared: SortedTypeSnapshot, own: SortedTypeSnapshot): TypeSnapshot {
  if (own.names.length === 0) return shared;
  if (shared.names.length === 0) return own;
  const at = own.names.map((n) => {
    if (shared.resources.has(n)) throw new Error(`duplicate resource "${n}"`);
    return lowerBound(shared.names, n);
  });
  const h = createHash("sha256");
  let prev = 0;
  for (let k = 0; k < at.length; k++) {
    h.update(shared.digestInput.subarray(shared.offsets[prev]!, shared.offsets[at[k]!]!));
    h.update(own.digestInput.subarray(own.offsets[k]!, own.offsets[k + 1]!));
    prev = at[k]!;
  }
  h.update(shared.digestInput.subarray(shared.offsets[prev]!));
  return { version: h.digest("base64url").slice(0, 12), resources: new MergedResources(shared, own, at) };
}

/** A snapshot of ready type snapshots. */
export function snapshotOfTypes(types: ReadonlyMap<string, TypeSnapshot>): Snapshot {
  return { types, get: (t) => types.get(t) };
}
